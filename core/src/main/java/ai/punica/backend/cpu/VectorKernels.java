package ai.punica.backend.cpu;

import static ai.punica.backend.cpu.VectorLanes.*;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * Vector API kernels ({@code FloatVector.SPECIES_PREFERRED}). This is the only class that names
 * {@code jdk.incubator.vector}; it is loaded only when that module is present.
 *
 * <p>Matrix products are {@link VectorGemm}'s; the vector shapes and widening loads are
 * {@link VectorLanes}'.
 *
 * <p>What C2 compiles well is narrow, so the kernels are shaped by measurement: one micro-kernel per
 * dtype (a dtype switch inside the loop makes C2 box the vectors, 4× slower); at most 8 accumulators
 * (a 4×4 bf16 kernel stopped C2 inlining the vector calls, 8× slower); scalar rather than masked tails
 * (masked loads took a slow path); and every kernel owns its loops over outputs and rows, so it is
 * compiled on its own hot loop and its callers invoke it a few times per call. Small kernels called
 * per block from a loop were sometimes inlined into that loop's compilation, which then ran out of
 * C2's node budget and boxed the vectors: the same benchmark ran 2-10× slower in some JVM runs.
 */
final class VectorKernels implements CpuKernels {

    /**
     * e^x for the batch-invariant kernels: {@code Math.exp} per element. The vector EXP is C2's own approximation
     * and the Java fallback (before C2 compiles the kernel) is {@code Math.exp}: they may differ in the last bit,
     * so the result would depend on when the kernel got compiled.
     */
    private static final ScalarKernels SCALAR = new ScalarKernels();
    /** Matrix products in a fixed reduction order per (row, output): {@link VectorGemm#gemmInvariant}. */
    private final boolean batchInvariant;

    private VectorKernels(boolean batchInvariant) {
        this.batchInvariant = batchInvariant;
    }

    /** Loaded and called only after the module was found. */
    static CpuKernels create(boolean batchInvariant) {
        return new VectorKernels(batchInvariant);
    }

    @Override
    public String describe() {
        return "vector " + F.vectorBitSize() + "-bit" + (batchInvariant ? ", batch-invariant" : "");
    }

    /** See {@link VectorGemm}. */
    @Override
    public void gemm(Gemm g, int r0, int r1, int o0, int o1) {
        if (batchInvariant) {
            VectorGemm.gemmInvariant(g, r0, r1, o0, o1);
        } else {
            VectorGemm.gemm(g, r0, r1, o0, o1);
        }
    }

    // ---- attention and element-wise kernels -------------------------------------------------------

    /**
     * s_j = scale · q·k_j, four keys at a time so each loaded chunk of q serves four FMAs; the part of
     * d that does not fill a vector is summed in scalar code.
     */
    @Override
    public void scores(MemorySegment q, long qIndex, MemorySegment keys, long kIndex, int kStride, int n, int d,
                       float scale, float[] s, int sOff) {
        int full = d - d % L;
        long qb = 4 * qIndex;
        int j = 0;
        for (; j + 4 <= n; j += 4) {
            long k0 = 4 * (kIndex + (long) j * kStride);
            long ks = 4L * kStride;
            FloatVector a0 = FloatVector.zero(F);
            FloatVector a1 = a0;
            FloatVector a2 = a0;
            FloatVector a3 = a0;
            for (int i = 0; i < full; i += L) {
                FloatVector qv = act(q, qb + 4L * i);
                long ko = k0 + 4L * i;
                a0 = qv.fma(act(keys, ko), a0);
                a1 = qv.fma(act(keys, ko + ks), a1);
                a2 = qv.fma(act(keys, ko + 2 * ks), a2);
                a3 = qv.fma(act(keys, ko + 3 * ks), a3);
            }
            long k = kIndex + (long) j * kStride;
            s[sOff + j] = scale * (sum(a0) + dotTail(q, qIndex, keys, k, full, d));
            s[sOff + j + 1] = scale * (sum(a1) + dotTail(q, qIndex, keys, k + kStride, full, d));
            s[sOff + j + 2] = scale * (sum(a2) + dotTail(q, qIndex, keys, k + 2L * kStride, full, d));
            s[sOff + j + 3] = scale * (sum(a3) + dotTail(q, qIndex, keys, k + 3L * kStride, full, d));
        }
        for (; j < n; j++) {
            long k = kIndex + (long) j * kStride;
            FloatVector acc = FloatVector.zero(F);
            for (int i = 0; i < full; i += L) {
                acc = act(q, qb + 4L * i).fma(act(keys, 4 * k + 4L * i), acc);
            }
            s[sOff + j] = scale * (sum(acc) + dotTail(q, qIndex, keys, k, full, d));
        }
    }

    /** Four heads × one key at a time: the key chunk is loaded once and used by four FMAs. */
    @Override
    public void scores4(MemorySegment q, long qIndex, MemorySegment keys, long kIndex, int kStride, int n, int d,
                        float scale, float[] s, int sOff, int sStride) {
        int full = d - d % L;
        long qb = 4 * qIndex;
        long qs = 4L * d;
        for (int j = 0; j < n; j++) {
            long k = kIndex + (long) j * kStride;
            long kb = 4 * k;
            FloatVector a0 = FloatVector.zero(F);
            FloatVector a1 = a0;
            FloatVector a2 = a0;
            FloatVector a3 = a0;
            for (int i = 0; i < full; i += L) {
                FloatVector kv = act(keys, kb + 4L * i);
                long qo = qb + 4L * i;
                a0 = act(q, qo).fma(kv, a0);
                a1 = act(q, qo + qs).fma(kv, a1);
                a2 = act(q, qo + 2 * qs).fma(kv, a2);
                a3 = act(q, qo + 3 * qs).fma(kv, a3);
            }
            s[sOff + j] = scale * (sum(a0) + dotTail(q, qIndex, keys, k, full, d));
            s[sStride + sOff + j] = scale * (sum(a1) + dotTail(q, qIndex + d, keys, k, full, d));
            s[2 * sStride + sOff + j] = scale * (sum(a2) + dotTail(q, qIndex + 2L * d, keys, k, full, d));
            s[3 * sStride + sOff + j] = scale * (sum(a3) + dotTail(q, qIndex + 3L * d, keys, k, full, d));
        }
    }

    /** Four heads' output chunks stay in registers while each value chunk is loaded once for all four. */
    @Override
    public void weightedSum4(float[] p, int pOff, int pStride, MemorySegment values, long vIndex, int vStride, int n,
                             int d, MemorySegment out, long outIndex) {
        int full = d - d % L;
        long ob = 4 * outIndex;
        long os = 4L * d;
        long vb = 4 * vIndex;
        long vs = 4L * vStride;
        for (int i = 0; i < full; i += L) {
            long oo = ob + 4L * i;
            FloatVector c0 = act(out, oo);
            FloatVector c1 = act(out, oo + os);
            FloatVector c2 = act(out, oo + 2 * os);
            FloatVector c3 = act(out, oo + 3 * os);
            long vo = vb + 4L * i;
            for (int j = 0; j < n; j++, vo += vs) {
                FloatVector vv = act(values, vo);
                c0 = vv.fma(FloatVector.broadcast(F, p[pOff + j]), c0);
                c1 = vv.fma(FloatVector.broadcast(F, p[pStride + pOff + j]), c1);
                c2 = vv.fma(FloatVector.broadcast(F, p[2 * pStride + pOff + j]), c2);
                c3 = vv.fma(FloatVector.broadcast(F, p[3 * pStride + pOff + j]), c3);
            }
            c0.intoMemorySegment(out, oo, NATIVE);
            c1.intoMemorySegment(out, oo + os, NATIVE);
            c2.intoMemorySegment(out, oo + 2 * os, NATIVE);
            c3.intoMemorySegment(out, oo + 3 * os, NATIVE);
        }
        for (int b = 0; b < 4; b++) {
            for (int i = full; i < d; i++) {
                long oi = outIndex + (long) b * d + i;
                float sum = out.getAtIndex(JAVA_FLOAT, oi);
                for (int j = 0; j < n; j++) {
                    sum += p[b * pStride + pOff + j] * values.getAtIndex(JAVA_FLOAT, vIndex + (long) j * vStride + i);
                }
                out.setAtIndex(JAVA_FLOAT, oi, sum);
            }
        }
    }

    private static float dotTail(MemorySegment a, long aIndex, MemorySegment b, long bIndex, int from, int to) {
        float sum = 0;
        for (int i = from; i < to; i++) {
            sum += a.getAtIndex(JAVA_FLOAT, aIndex + i) * b.getAtIndex(JAVA_FLOAT, bIndex + i);
        }
        return sum;
    }

    /** out += Σ_j p_j · v_j: a chunk of out stays in a register while all values of the run are added. */
    @Override
    public void weightedSum(float[] p, int pOff, MemorySegment values, long vIndex, int vStride, int n, int d,
                            MemorySegment out, long outIndex) {
        int full = d - d % L;
        long ob = 4 * outIndex;
        long vb = 4 * vIndex;
        long vs = 4L * vStride;
        for (int i = 0; i < full; i += L) {
            FloatVector acc = act(out, ob + 4L * i);
            long vo = vb + 4L * i;
            for (int j = 0; j < n; j++, vo += vs) {
                acc = act(values, vo).fma(FloatVector.broadcast(F, p[pOff + j]), acc);
            }
            acc.intoMemorySegment(out, ob + 4L * i, NATIVE);
        }
        ScalarKernels.weightedSumColumns(p, pOff, values, vIndex, vStride, n, full, d, out, outIndex);
    }

    @Override
    public float expInPlace(float[] s, int offset, int n, float max) {
        if (batchInvariant) {
            return SCALAR.expInPlace(s, offset, n, max); // see SCALAR
        }
        int full = offset + n - n % L;
        FloatVector acc = FloatVector.zero(F);
        for (int i = offset; i < full; i += L) {
            FloatVector e = FloatVector.fromArray(F, s, i).sub(max).lanewise(VectorOperators.EXP);
            e.intoArray(s, i);
            acc = acc.add(e);
        }
        return ScalarKernels.expFrom(sum(acc), s, full, offset + n, max);
    }

    @Override
    public float sumOfSquares(MemorySegment x, long index, int n) {
        long xb = 4 * index;
        int full = n - n % L;
        FloatVector acc = FloatVector.zero(F);
        for (int i = 0; i < full; i += L) {
            FloatVector v = act(x, xb + 4L * i);
            acc = v.fma(v, acc);
        }
        return ScalarKernels.sumOfSquaresFrom(sum(acc), x, index, full, n);
    }

    @Override
    public void scaleMul(MemorySegment x, long xIndex, float factor, MemorySegment w, long wIndex,
                         MemorySegment out, long outIndex, int n) {
        int full = n - n % L;
        for (int i = 0; i < full; i += L) {
            act(x, 4 * (xIndex + i)).mul(factor).mul(act(w, 4 * (wIndex + i))).intoMemorySegment(out, 4 * (outIndex + i), NATIVE);
        }
        ScalarKernels.scaleMulFrom(x, xIndex, factor, w, wIndex, out, outIndex, full, n);
    }

    @Override
    public void add(MemorySegment a, long aIndex, MemorySegment b, long bIndex, MemorySegment out, long outIndex, int n) {
        int full = n - n % L;
        for (int i = 0; i < full; i += L) {
            act(a, 4 * (aIndex + i)).add(act(b, 4 * (bIndex + i))).intoMemorySegment(out, 4 * (outIndex + i), NATIVE);
        }
        ScalarKernels.addFrom(a, aIndex, b, bIndex, out, outIndex, full, n);
    }

    @Override
    public void swiglu(MemorySegment gateUp, long gIndex, long uIndex, MemorySegment out, long outIndex, int n) {
        if (batchInvariant) {
            SCALAR.swiglu(gateUp, gIndex, uIndex, out, outIndex, n); // see SCALAR
            return;
        }
        int full = n - n % L;
        for (int i = 0; i < full; i += L) {
            FloatVector g = act(gateUp, 4 * (gIndex + i));
            FloatVector u = act(gateUp, 4 * (uIndex + i));
            // silu(g) · u = g / (1 + e^−g) · u
            g.div(g.neg().lanewise(VectorOperators.EXP).add(1f)).mul(u).intoMemorySegment(out, 4 * (outIndex + i), NATIVE);
        }
        ScalarKernels.swigluFrom(gateUp, gIndex, uIndex, out, outIndex, full, n);
    }

    @Override
    public void rotateHalf(MemorySegment x, long index, float[] cos, float[] sin, int half) {
        int full = half - half % L;
        for (int i = 0; i < full; i += L) {
            long o1 = 4 * (index + i);
            long o2 = 4 * (index + half + i);
            FloatVector x1 = act(x, o1);
            FloatVector x2 = act(x, o2);
            FloatVector c = FloatVector.fromArray(F, cos, i);
            FloatVector s = FloatVector.fromArray(F, sin, i);
            x1.mul(c).sub(x2.mul(s)).intoMemorySegment(x, o1, NATIVE);
            x2.mul(c).add(x1.mul(s)).intoMemorySegment(x, o2, NATIVE);
        }
        ScalarKernels.rotateHalfFrom(x, index, cos, sin, full, half);
    }

    @Override
    public void toFloat(MemorySegment src, DType type, long srcIndex, MemorySegment dst, long dstIndex, int n) {
        int full = n - n % L;
        long db = 4 * dstIndex;
        switch (type) {
            case F32 -> {
                for (int i = 0; i < full; i += L) {
                    f32(src, 4 * (srcIndex + i)).intoMemorySegment(dst, db + 4L * i, NATIVE);
                }
            }
            case BF16 -> {
                for (int i = 0; i < full; i += L) {
                    bf16(src, 2 * (srcIndex + i)).intoMemorySegment(dst, db + 4L * i, NATIVE);
                }
            }
            case F16 -> {
                for (int i = 0; i < full; i += L) {
                    f16(src, 2 * (srcIndex + i)).intoMemorySegment(dst, db + 4L * i, NATIVE);
                }
            }
        }
        ScalarKernels.toFloatFrom(src, type, srcIndex, dst, dstIndex, full, n);
    }

    /** A lane sum: in lane order when batch-invariant ({@link VectorLanes#sumInOrder}), else the fastest order. */
    private float sum(FloatVector v) {
        return batchInvariant ? sumInOrder(v) : v.reduceLanes(VectorOperators.ADD);
    }
}
