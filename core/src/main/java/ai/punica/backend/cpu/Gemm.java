package ai.punica.backend.cpu;

import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * One matrix product as the kernels see it, covering matmul and both SGMV halves:
 * {@code out[r, o] = (accumulate ? out[r, o] : bias[o]) + scale · Σ_k x[r, k] · w[o, k]}.
 * x is float32 with {@code xStride} floats per row; w has rows of {@code k} elements of {@code wType}
 * (little-endian); out is float32 starting at element {@code outOffset} with {@code outStride} per row.
 * Rows r index x and out alike. bias (any dtype, may be null) is only added when not accumulating.
 * {@code fixedOrder} ({@code --batch-invariant}): every (row, output) is summed in one order whatever the rows,
 * the split into pieces and the JIT's state ({@link VectorGemm#gemmInvariant}, {@link VectorLanes#sumInOrder}).
 */
record Gemm(MemorySegment x, int xStride, MemorySegment w, DType wType, int k,
            MemorySegment out, long outOffset, int outStride,
            MemorySegment bias, DType biasType, float scale, boolean accumulate, boolean fixedOrder) {

    /** Summed in whatever order is fastest for the shape. */
    Gemm(MemorySegment x, int xStride, MemorySegment w, DType wType, int k, MemorySegment out, long outOffset,
         int outStride, MemorySegment bias, DType biasType, float scale, boolean accumulate) {
        this(x, xStride, w, wType, k, out, outOffset, outStride, bias, biasType, scale, accumulate, false);
    }

    /**
     * Writes one dot product: the first block of k of a non-accumulating product sets out (plus bias),
     * every other block adds to it (kernels may split k into blocks for cache reuse).
     */
    void store(int r, int o, float sum, boolean firstBlock) {
        long i = outOffset + (long) r * outStride + o;
        float value = scale * sum;
        if (accumulate || !firstBlock) {
            value += out.getAtIndex(ValueLayout.JAVA_FLOAT, i);
        } else if (bias != null) {
            value += CpuTensor.element(bias, biasType, o);
        }
        out.setAtIndex(ValueLayout.JAVA_FLOAT, i, value);
    }
}
