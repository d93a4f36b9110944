package ai.punica.backend.cpu;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;

/**
 * Plain-Java kernels: the fallback when {@code jdk.incubator.vector} is absent (or
 * {@code punica.cpu.vector=false}). Float32 accumulation in the same order as the float math of the
 * definitions; gemm converts one weight row to float once and dots it with every x row.
 */
final class ScalarKernels implements CpuKernels {

    /** One converted weight row per worker thread, grown on demand. */
    private final ThreadLocal<float[]> weightRow = ThreadLocal.withInitial(() -> new float[0]);

    @Override
    public String describe() {
        return "scalar";
    }

    /** out[r, o] (+)= scale · Σ_k x[r, k] · w[o, k]: w[o] converted once, then dotted with 4 x rows at a time. */
    @Override
    public void gemm(Gemm g, int r0, int r1, int o0, int o1) {
        int k = g.k();
        float[] row = weightRow.get();
        if (row.length < k) {
            row = new float[k];
            weightRow.set(row);
        }
        MemorySegment x = g.x();
        for (int o = o0; o < o1; o++) {
            long wBase = (long) o * k;
            for (int i = 0; i < k; i++) {
                row[i] = CpuTensor.element(g.w(), g.wType(), wBase + i);
            }
            int r = r0;
            for (; r + 4 <= r1; r += 4) {
                long x0 = (long) r * g.xStride();
                long x1 = x0 + g.xStride();
                long x2 = x1 + g.xStride();
                long x3 = x2 + g.xStride();
                float s0 = 0;
                float s1 = 0;
                float s2 = 0;
                float s3 = 0;
                for (int i = 0; i < k; i++) {
                    float w = row[i];
                    s0 += x.getAtIndex(JAVA_FLOAT, x0 + i) * w;
                    s1 += x.getAtIndex(JAVA_FLOAT, x1 + i) * w;
                    s2 += x.getAtIndex(JAVA_FLOAT, x2 + i) * w;
                    s3 += x.getAtIndex(JAVA_FLOAT, x3 + i) * w;
                }
                g.store(r, o, s0, true);
                g.store(r + 1, o, s1, true);
                g.store(r + 2, o, s2, true);
                g.store(r + 3, o, s3, true);
            }
            for (; r < r1; r++) {
                long x0 = (long) r * g.xStride();
                float s = 0;
                for (int i = 0; i < k; i++) {
                    s += x.getAtIndex(JAVA_FLOAT, x0 + i) * row[i];
                }
                g.store(r, o, s, true);
            }
        }
    }

    @Override
    public void scores(MemorySegment q, long qIndex, MemorySegment keys, long kIndex, int kStride, int n, int d,
                       float scale, float[] s, int sOff) {
        for (int j = 0; j < n; j++) {
            long k = kIndex + (long) j * kStride;
            float sum = 0;
            for (int i = 0; i < d; i++) {
                sum += q.getAtIndex(JAVA_FLOAT, qIndex + i) * keys.getAtIndex(JAVA_FLOAT, k + i);
            }
            s[sOff + j] = scale * sum;
        }
    }

    @Override
    public void scores4(MemorySegment q, long qIndex, MemorySegment keys, long kIndex, int kStride, int n, int d,
                        float scale, float[] s, int sOff, int sStride) {
        for (int b = 0; b < 4; b++) {
            scores(q, qIndex + (long) b * d, keys, kIndex, kStride, n, d, scale, s, b * sStride + sOff);
        }
    }

    @Override
    public void weightedSum4(float[] p, int pOff, int pStride, MemorySegment values, long vIndex, int vStride, int n,
                             int d, MemorySegment out, long outIndex) {
        for (int b = 0; b < 4; b++) {
            weightedSum(p, b * pStride + pOff, values, vIndex, vStride, n, d, out, outIndex + (long) b * d);
        }
    }

    @Override
    public void weightedSum(float[] p, int pOff, MemorySegment values, long vIndex, int vStride, int n, int d,
                            MemorySegment out, long outIndex) {
        weightedSumColumns(p, pOff, values, vIndex, vStride, n, 0, d, out, outIndex);
    }

    @Override
    public float expInPlace(float[] s, int offset, int n, float max) {
        return expFrom(0, s, offset, offset + n, max);
    }

    @Override
    public float sumOfSquares(MemorySegment x, long index, int n) {
        return sumOfSquaresFrom(0, x, index, 0, n);
    }

    @Override
    public void scaleMul(MemorySegment x, long xIndex, float factor, MemorySegment w, long wIndex,
                         MemorySegment out, long outIndex, int n) {
        scaleMulFrom(x, xIndex, factor, w, wIndex, out, outIndex, 0, n);
    }

    @Override
    public void add(MemorySegment a, long aIndex, MemorySegment b, long bIndex, MemorySegment out, long outIndex, int n) {
        addFrom(a, aIndex, b, bIndex, out, outIndex, 0, n);
    }

    @Override
    public void swiglu(MemorySegment gateUp, long gIndex, long uIndex, MemorySegment out, long outIndex, int n) {
        swigluFrom(gateUp, gIndex, uIndex, out, outIndex, 0, n);
    }

    @Override
    public void rotateHalf(MemorySegment x, long index, float[] cos, float[] sin, int half) {
        rotateHalfFrom(x, index, cos, sin, 0, half);
    }

    @Override
    public void toFloat(MemorySegment src, DType type, long srcIndex, MemorySegment dst, long dstIndex, int n) {
        toFloatFrom(src, type, srcIndex, dst, dstIndex, 0, n);
    }

    // ---- the loops over elements [from, to): whole ops here, the tails of the vector kernels -------

    static void weightedSumColumns(float[] p, int pOff, MemorySegment values, long vIndex, int vStride, int n,
                                   int from, int to, MemorySegment out, long outIndex) {
        for (int i = from; i < to; i++) {
            float sum = out.getAtIndex(JAVA_FLOAT, outIndex + i);
            for (int j = 0; j < n; j++) {
                sum += p[pOff + j] * values.getAtIndex(JAVA_FLOAT, vIndex + (long) j * vStride + i);
            }
            out.setAtIndex(JAVA_FLOAT, outIndex + i, sum);
        }
    }

    /** {@code s[i] = e^(s[i] − max)} for i in [from, to); returns {@code sum} plus them, added in order. */
    static float expFrom(float sum, float[] s, int from, int to, float max) {
        for (int i = from; i < to; i++) {
            s[i] = (float) Math.exp(s[i] - max);
            sum += s[i];
        }
        return sum;
    }

    /** {@code sum} plus the squares of elements [from, to), added in order. */
    static float sumOfSquaresFrom(float sum, MemorySegment x, long index, int from, int to) {
        for (int i = from; i < to; i++) {
            float v = x.getAtIndex(JAVA_FLOAT, index + i);
            sum += v * v;
        }
        return sum;
    }

    static void scaleMulFrom(MemorySegment x, long xIndex, float factor, MemorySegment w, long wIndex,
                             MemorySegment out, long outIndex, int from, int to) {
        for (int i = from; i < to; i++) {
            out.setAtIndex(JAVA_FLOAT, outIndex + i, x.getAtIndex(JAVA_FLOAT, xIndex + i) * factor * w.getAtIndex(JAVA_FLOAT, wIndex + i));
        }
    }

    static void addFrom(MemorySegment a, long aIndex, MemorySegment b, long bIndex, MemorySegment out, long outIndex,
                        int from, int to) {
        for (int i = from; i < to; i++) {
            out.setAtIndex(JAVA_FLOAT, outIndex + i, a.getAtIndex(JAVA_FLOAT, aIndex + i) + b.getAtIndex(JAVA_FLOAT, bIndex + i));
        }
    }

    /** {@code out = silu(g) · u = g / (1 + e^−g) · u}. */
    static void swigluFrom(MemorySegment gateUp, long gIndex, long uIndex, MemorySegment out, long outIndex, int from,
                           int to) {
        for (int i = from; i < to; i++) {
            float g = gateUp.getAtIndex(JAVA_FLOAT, gIndex + i);
            float u = gateUp.getAtIndex(JAVA_FLOAT, uIndex + i);
            out.setAtIndex(JAVA_FLOAT, outIndex + i, g / (1f + (float) Math.exp(-g)) * u);
        }
    }

    /** Pairs (i, half + i) for i in [from, half): rotated by the angle of cos[i], sin[i]. */
    static void rotateHalfFrom(MemorySegment x, long index, float[] cos, float[] sin, int from, int half) {
        for (int i = from; i < half; i++) {
            float x1 = x.getAtIndex(JAVA_FLOAT, index + i);
            float x2 = x.getAtIndex(JAVA_FLOAT, index + half + i);
            x.setAtIndex(JAVA_FLOAT, index + i, x1 * cos[i] - x2 * sin[i]);
            x.setAtIndex(JAVA_FLOAT, index + half + i, x2 * cos[i] + x1 * sin[i]);
        }
    }

    static void toFloatFrom(MemorySegment src, DType type, long srcIndex, MemorySegment dst, long dstIndex, int from,
                            int to) {
        for (int i = from; i < to; i++) {
            dst.setAtIndex(JAVA_FLOAT, dstIndex + i, CpuTensor.element(src, type, srcIndex + i));
        }
    }
}
