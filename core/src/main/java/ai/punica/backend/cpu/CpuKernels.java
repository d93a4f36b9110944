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

    /** {@code Σ_i a[i] · b[i]}. */
    float dot(MemorySegment a, long aIndex, MemorySegment b, long bIndex, int n);

    /** {@code y[i] += alpha · x[i]}. */
    void axpy(float alpha, MemorySegment x, long xIndex, MemorySegment y, long yIndex, int n);

    /** {@code s[i] = e^(s[i] − max)}; returns {@code Σ_i s[i]}. */
    float expInPlace(float[] s, int n, float max);

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
