package ai.punica.backend.cpu;

import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;

/**
 * The primitive loops of the CPU backend, in a scalar and a Vector API version. Float32 operands are
 * native-order segments addressed by element index; weights ({@link DType} given) are little-endian.
 * {@link CpuBackend} cuts the work into pieces and runs them on its threads; a kernel call is one piece
 * and must only write the elements it is given.
 */
sealed interface CpuKernels permits ScalarKernels, VectorKernels {

    /** What the kernels are, for logs ("vector 512-bit", "scalar"). */
    String describe();

    /** {@link Gemm} for rows {@code [r0, r1)} and outputs {@code [o0, o1)}. */
    void gemm(Gemm g, int r0, int r1, int o0, int o1);

    /**
     * Attention scores of one query against a run of keys: {@code s[sOff + j] = scale · Σ_i q[i] · k_j[i]}
     * for {@code j < n}, key j starting at element {@code kIndex + j · kStride}, head size d.
     */
    void scores(MemorySegment q, long qIndex, MemorySegment keys, long kIndex, int kStride, int n, int d,
                float scale, float[] s, int sOff);

    /**
     * {@link #scores} for 4 query heads at once (GQA: heads sharing one KV head), so each key is loaded
     * once for all four: head b's query starts at {@code qIndex + b · d}, its scores go to
     * {@code s[b · sStride + sOff + j]}.
     */
    void scores4(MemorySegment q, long qIndex, MemorySegment keys, long kIndex, int kStride, int n, int d,
                 float scale, float[] s, int sOff, int sStride);

    /**
     * {@link #weightedSum} for 4 heads at once, each value loaded once: head b uses weights
     * {@code p[b · pStride + pOff + j]} and adds to {@code out[outIndex + b · d + i]}.
     */
    void weightedSum4(float[] p, int pOff, int pStride, MemorySegment values, long vIndex, int vStride, int n,
                      int d, MemorySegment out, long outIndex);

    /**
     * Weighted sum of a run of values: {@code out[i] += Σ_j p[pOff + j] · v_j[i]} for {@code j < n},
     * value j starting at element {@code vIndex + j · vStride}, head size d.
     */
    void weightedSum(float[] p, int pOff, MemorySegment values, long vIndex, int vStride, int n, int d,
                     MemorySegment out, long outIndex);

    /** {@code s[i] = e^(s[i] − max)} for i in {@code [offset, offset + n)}; returns their sum. */
    float expInPlace(float[] s, int offset, int n, float max);

    /** {@code Σ_i x[i]²}. */
    float sumOfSquares(MemorySegment x, long index, int n);

    /** {@code out[i] = x[i] · factor · w[i]}. */
    void scaleMul(MemorySegment x, long xIndex, float factor, MemorySegment w, long wIndex,
                  MemorySegment out, long outIndex, int n);

    /** {@code out[i] = a[i] + b[i]}. */
    void add(MemorySegment a, long aIndex, MemorySegment b, long bIndex, MemorySegment out, long outIndex, int n);

    /** {@code out[i] = silu(g[i]) · u[i]}, silu(g) = g / (1 + e^−g), g and u in the same segment. */
    void swiglu(MemorySegment gateUp, long gIndex, long uIndex, MemorySegment out, long outIndex, int n);

    /**
     * Rotate-half on one head: with {@code x1 = x[i]}, {@code x2 = x[i + half]}:
     * {@code x[i] = x1·cos[i] − x2·sin[i]}, {@code x[i + half] = x2·cos[i] + x1·sin[i]}.
     */
    void rotateHalf(MemorySegment x, long index, float[] cos, float[] sin, int half);

    /** {@code dst[i] = (float) src[i]} for a weight of any dtype. */
    void toFloat(MemorySegment src, DType type, long srcIndex, MemorySegment dst, long dstIndex, int n);
}
