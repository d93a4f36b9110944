package ai.punica.backend.cpu;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The vector shapes the {@link VectorKernels} use and the loads that widen a weight row's elements
 * (f32, bf16, fp16, little-endian) or an activation's (float32, native order) to a {@code FloatVector}.
 * Loaded only with the kernels, when {@code jdk.incubator.vector} is present.
 */
final class VectorLanes {

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Shorts with as many lanes as F (half its width), for bf16/fp16 loads. */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    static final int L = F.length();
    /**
     * Half-width vectors for products with L/2 ≤ k < L (LoRA rank 8 with 16 lanes); F itself when F is
     * too narrow to halve.
     */
    static final VectorSpecies<Float> H = F.vectorBitSize() >= 256
            ? VectorSpecies.of(float.class, VectorShape.forBitSize(F.vectorBitSize() / 2)) : F;
    static final VectorSpecies<Short> HS = VectorSpecies.of(short.class, VectorShape.forBitSize(H.vectorBitSize() / 2));
    static final VectorSpecies<Integer> HI = VectorSpecies.of(int.class, H.vectorShape());
    static final int HL = H.length();
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    private VectorLanes() {
    }

    // ---- weight loads: L elements of a little-endian weight row, widened to float ------------------

    static FloatVector f32(MemorySegment w, long byteOffset) {
        return FloatVector.fromMemorySegment(F, w, byteOffset, LE);
    }

    /** bf16 is the upper half of an f32: widen each short to an int and shift it left by 16. */
    static FloatVector bf16(MemorySegment w, long byteOffset) {
        return bf16Bits(ShortVector.fromMemorySegment(S, w, byteOffset, LE));
    }

    static FloatVector bf16Bits(ShortVector bits) {
        return bits.convertShape(VectorOperators.ZERO_EXTEND_S2I, I, 0).reinterpretAsInts()
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    static FloatVector f16(MemorySegment w, long byteOffset) {
        return f16Bits(ShortVector.fromMemorySegment(S, w, byteOffset, LE));
    }

    /**
     * Exact IEEE half → single: equal to {@link Float#float16ToFloat} on all 65536 inputs except that a
     * signalling NaN stays signalling (still a NaN). With h the
     * sign-extended half, {@code m = (h << 17) >>> 4} puts exponent|mantissa where a float has them, so
     * {@code float(m) · 2^112} is the magnitude for normals and subnormals alike. Exponent 31 (inf/NaN)
     * is detected by the carry of exponent + 1 out of its 5 bits and forced to 255; the sign is OR-ed
     * back. Shifts, ands and one multiply: no masks or blends, which C2 compiles poorly here.
     */
    static FloatVector f16Bits(ShortVector bits) {
        IntVector h = (IntVector) bits.convertShape(VectorOperators.S2I, I, 0);
        IntVector magnitude = h.lanewise(VectorOperators.LSHL, 17).lanewise(VectorOperators.LSHR, 4);
        IntVector infNan = magnitude.and(0x0F800000).add(0x00800000)
                .lanewise(VectorOperators.LSHL, 3).lanewise(VectorOperators.ASHR, 31).and(0x7F800000);
        return magnitude.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                .or(h.and(0x80000000)).or(infNan).reinterpretAsFloats();
    }

    static FloatVector act(MemorySegment x, long byteOffset) {
        return FloatVector.fromMemorySegment(F, x, byteOffset, NATIVE);
    }

    /**
     * The lanes of v added in a fixed pairwise tree: lane i + n/2 onto lane i, halving n, lane 0 at the end.
     * {@code reduceLanes(ADD)} may add them in any order, and does: C2's intrinsic and the Java fallback
     * (interpreter, C1) use different orders, so its result changes in the last bits when a kernel gets
     * compiled. Batch-invariant kernels use this instead: lane-wise adds and exact lane moves, the same in
     * every tier.
     */
    static float sumInOrder(FloatVector v) {
        FloatVector s = v;
        for (int half = v.length() / 2; half >= 1; half /= 2) {
            s = s.add(s.slice(half)); // lanes [half, n) onto [0, n - half); zeros shifted in above
        }
        return s.lane(0);
    }
}
