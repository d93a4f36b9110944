package ai.punica.backend.cpu;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector API kernels ({@code FloatVector.SPECIES_PREFERRED}). This is the only class that names
 * {@code jdk.incubator.vector}; it is loaded only when that module is present.
 *
 * <p>Matrix products use the dot-product form (x and w are both k-contiguous). Each weight row is
 * streamed once per step and dotted with several x rows held in L1, so decode (few rows) reads the
 * weight bytes once, at the memory-bandwidth limit. For prefill, rows are tiled ({@link #ROW_TILE})
 * and k is blocked ({@link #K_TILE}, above {@link #BLOCK_K_ABOVE_ROWS} rows) so the x block stays in
 * L2 and each weight slice in L1. Weights are widened to float in registers: bf16 by a 16-bit shift,
 * fp16 by an exact bit conversion (Java 25 has no vector fp16 conversion; converting blocks to a
 * float scratch first measured 2.5× slower).
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

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Shorts with as many lanes as F (half its width), for bf16/fp16 loads. */
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final int L = F.length();
    /**
     * Half-width vectors for products with L/2 ≤ k < L (LoRA rank 8 with 16 lanes); F itself when F is
     * too narrow to halve.
     */
    private static final VectorSpecies<Float> H = F.vectorBitSize() >= 256
            ? VectorSpecies.of(float.class, VectorShape.forBitSize(F.vectorBitSize() / 2)) : F;
    private static final VectorSpecies<Short> HS = VectorSpecies.of(short.class, VectorShape.forBitSize(H.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> HI = VectorSpecies.of(int.class, H.vectorShape());
    private static final int HL = H.length();
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();

    /**
     * Accumulating products (LoRA expand) with k up to this and at least 4 rows take the transposed
     * form: a weight block is transposed once into scratch and reused by every row.
     */
    static final int TRANSPOSED_MAX_K = 64;
    /** Per worker thread: a block of L weight rows transposed to [k][L] floats. */
    private static final ThreadLocal<float[]> TRANSPOSED = ThreadLocal.withInitial(() -> new float[TRANSPOSED_MAX_K * L]);
    /** x rows per tile: 64 rows × {@link #K_TILE} floats = 256 KiB, which stays in L2. */
    static final int ROW_TILE = 64;
    /** k per block: 4 bf16 weight rows × 1024 = 8 KiB and 4 x rows × 1024 floats = 16 KiB fit in L1 together. */
    static final int K_TILE = 1024;
    /**
     * Row tiles up to this many rows are not blocked along k: with k blocks a weight row is read in
     * 2 KiB pieces, which the hardware prefetcher follows badly (fp16 decode ran 2.4× slower).
     */
    static final int BLOCK_K_ABOVE_ROWS = 16;

    private VectorKernels() {
    }

    /** Loaded and called only after the module was found. */
    static CpuKernels create() {
        return new VectorKernels();
    }

    @Override
    public String describe() {
        return "vector " + F.vectorBitSize() + "-bit";
    }

    // ---- weight loads: L elements of a little-endian weight row, widened to float ------------------

    private static FloatVector f32(MemorySegment w, long byteOffset) {
        return FloatVector.fromMemorySegment(F, w, byteOffset, LE);
    }

    /** bf16 is the upper half of an f32: widen each short to an int and shift it left by 16. */
    private static FloatVector bf16(MemorySegment w, long byteOffset) {
        return bf16Bits(ShortVector.fromMemorySegment(S, w, byteOffset, LE));
    }

    private static FloatVector bf16Bits(ShortVector bits) {
        return bits.convertShape(VectorOperators.ZERO_EXTEND_S2I, I, 0).reinterpretAsInts()
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector f16(MemorySegment w, long byteOffset) {
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
    private static FloatVector f16Bits(ShortVector bits) {
        IntVector h = (IntVector) bits.convertShape(VectorOperators.S2I, I, 0);
        IntVector magnitude = h.lanewise(VectorOperators.LSHL, 17).lanewise(VectorOperators.LSHR, 4);
        IntVector infNan = magnitude.and(0x0F800000).add(0x00800000)
                .lanewise(VectorOperators.LSHL, 3).lanewise(VectorOperators.ASHR, 31).and(0x7F800000);
        return magnitude.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                .or(h.and(0x80000000)).or(infNan).reinterpretAsFloats();
    }

    private static FloatVector act(MemorySegment x, long byteOffset) {
        return FloatVector.fromMemorySegment(F, x, byteOffset, NATIVE);
    }

    // ---- gemm -------------------------------------------------------------------------------------

    /**
     * out[r, o] (+)= scale · Σ_k x[r, k] · w[o, k]. Loop order: row tile, k block, 4 weight rows, 4 x rows.
     * Within a (row tile, k block) each weight slice is read from memory once and reused from L1 by all
     * x rows of the tile.
     */
    @Override
    public void gemm(Gemm g, int r0, int r1, int o0, int o1) {
        if (g.k() <= TRANSPOSED_MAX_K && g.accumulate() && r1 - r0 >= 4 && o1 - o0 >= L) {
            int oMain = o0 + (o1 - o0) / L * L;
            transposedK(g, r0, r1, o0, oMain);
            if (oMain < o1) {
                dotForm(g, r0, r1, oMain, o1);
            }
            return;
        }
        dotForm(g, r0, r1, o0, o1);
    }

    /** The dot-product form: narrow k directly, otherwise tiles of micro-kernels. */
    private static void dotForm(Gemm g, int r0, int r1, int o0, int o1) {
        int k = g.k();
        if (k < 2 * L) {
            narrowK(g, r0, r1, o0, o1);
            return;
        }
        if (k <= TRANSPOSED_MAX_K) {
            // Short k has kernels of its own: sharing the long-k kernels with it made C2 compile
            // those for short trip counts, and the base matmuls and LoRA shrink ran 6x slower.
            switch (g.wType()) {
                case F32 -> shortKF32(g, r0, r1, o0, o1);
                case BF16 -> shortKBf16(g, r0, r1, o0, o1);
                case F16 -> shortKF16(g, r0, r1, o0, o1);
            }
            return;
        }
        for (int rt = r0; rt < r1; rt += ROW_TILE) {
            int rtEnd = Math.min(r1, rt + ROW_TILE);
            // Few rows (decode): no k blocks, so each weight row is one long stream the prefetcher
            // follows; x is small enough to stay in cache anyway.
            int kTile = rtEnd - rt <= BLOCK_K_ABOVE_ROWS ? k : K_TILE;
            for (int k0 = 0; k0 < k; ) {
                // A short last block would cost a full reduction for little work: fold it into this one.
                int k1 = k - k0 <= kTile + kTile / 2 ? k : k0 + kTile;
                boolean first = k0 == 0;
                switch (g.wType()) {
                    case F32 -> tileF32(g, rt, rtEnd, o0, o1, k0, k1, first);
                    case BF16 -> tileBf16(g, rt, rtEnd, o0, o1, k0, k1, first);
                    case F16 -> tileF16(g, rt, rtEnd, o0, o1, k0, k1, first);
                }
                k0 = k1;
            }
        }
    }

    /**
     * One (row tile, k block): rows in blocks of 4 against pairs of weight rows (4×2), the last 1-3 rows
     * against quads of weight rows (1×4), the last 1-3 weight rows one by one. Each kernel owns its loops
     * over o and r (see the class comment); o is the outer loop so a weight slice stays in L1 while all
     * rows of the tile use it.
     */
    private static void tileF32(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        int rMain = r0 + (r1 - r0) / 4 * 4;
        int oMain = o0 + (o1 - o0) / 4 * 4;
        f32Rows4(g, r0, rMain, o0, oMain, k0, k1, first);
        f32Rows1(g, rMain, r1, o0, oMain, k0, k1, first);
        f32Dots(g, r0, r1, oMain, o1, k0, k1, first);
    }

    private static void tileBf16(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        int rMain = r0 + (r1 - r0) / 4 * 4;
        int oMain = o0 + (o1 - o0) / 4 * 4;
        bf16Rows4(g, r0, rMain, o0, oMain, k0, k1, first);
        bf16Rows1(g, rMain, r1, o0, oMain, k0, k1, first);
        bf16Dots(g, r0, r1, oMain, o1, k0, k1, first);
    }

    /** fp16: 4 rows × 1 weight row (its conversion is long; more weight rows in flight slowed C2 down). */
    private static void tileF16(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        int rMain = r0 + (r1 - r0) / 4 * 4;
        f16Rows4(g, r0, rMain, o0, o1, k0, k1, first);
        f16Dots(g, rMain, r1, o0, o1, k0, k1, first);
    }

    /** out[r..r+3, o..o+1] for r in blocks of 4 and o in pairs: f32 weights, 8 accumulators. */
    private static void f32Rows4(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        long xs = 4L * g.xStride();
        long ws = 4L * g.k();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o += 2) {
            long wb = 4L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r += 4) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector a00 = FloatVector.zero(F);
                FloatVector a01 = a00;
                FloatVector a10 = a00;
                FloatVector a11 = a00;
                FloatVector a20 = a00;
                FloatVector a21 = a00;
                FloatVector a30 = a00;
                FloatVector a31 = a00;
                for (int i = 0; i < full; i += L) {
                    FloatVector w0 = f32(w, wb + 4L * i);
                    FloatVector w1 = f32(w, wb + ws + 4L * i);
                    long xo = xb + 4L * i;
                    FloatVector xv = act(x, xo);
                    a00 = xv.fma(w0, a00);
                    a01 = xv.fma(w1, a01);
                    xv = act(x, xo + xs);
                    a10 = xv.fma(w0, a10);
                    a11 = xv.fma(w1, a11);
                    xv = act(x, xo + 2 * xs);
                    a20 = xv.fma(w0, a20);
                    a21 = xv.fma(w1, a21);
                    xv = act(x, xo + 3 * xs);
                    a30 = xv.fma(w0, a30);
                    a31 = xv.fma(w1, a31);
                }
                store4x2(g, r, o, k0 + full, k1, first, a00, a01, a10, a11, a20, a21, a30, a31);
            }
        }
    }

    /** out[r..r+3, o..o+1] for r in blocks of 4 and o in pairs: bf16 weights, 8 accumulators. */
    private static void bf16Rows4(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        long xs = 4L * g.xStride();
        long ws = 2L * g.k();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o += 2) {
            long wb = 2L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r += 4) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector a00 = FloatVector.zero(F);
                FloatVector a01 = a00;
                FloatVector a10 = a00;
                FloatVector a11 = a00;
                FloatVector a20 = a00;
                FloatVector a21 = a00;
                FloatVector a30 = a00;
                FloatVector a31 = a00;
                for (int i = 0; i < full; i += L) {
                    FloatVector w0 = bf16(w, wb + 2L * i);
                    FloatVector w1 = bf16(w, wb + ws + 2L * i);
                    long xo = xb + 4L * i;
                    FloatVector xv = act(x, xo);
                    a00 = xv.fma(w0, a00);
                    a01 = xv.fma(w1, a01);
                    xv = act(x, xo + xs);
                    a10 = xv.fma(w0, a10);
                    a11 = xv.fma(w1, a11);
                    xv = act(x, xo + 2 * xs);
                    a20 = xv.fma(w0, a20);
                    a21 = xv.fma(w1, a21);
                    xv = act(x, xo + 3 * xs);
                    a30 = xv.fma(w0, a30);
                    a31 = xv.fma(w1, a31);
                }
                store4x2(g, r, o, k0 + full, k1, first, a00, a01, a10, a11, a20, a21, a30, a31);
            }
        }
    }

    /** Stores a 4×2 block: each accumulator's lane sum plus the scalar tail k in [tail, k1). */
    private static void store4x2(Gemm g, int r, int o, int tail, int k1, boolean first, FloatVector a00,
                                 FloatVector a01, FloatVector a10, FloatVector a11, FloatVector a20,
                                 FloatVector a21, FloatVector a30, FloatVector a31) {
        g.store(r, o, a00.reduceLanes(VectorOperators.ADD) + tail(g, r, o, tail, k1), first);
        g.store(r, o + 1, a01.reduceLanes(VectorOperators.ADD) + tail(g, r, o + 1, tail, k1), first);
        g.store(r + 1, o, a10.reduceLanes(VectorOperators.ADD) + tail(g, r + 1, o, tail, k1), first);
        g.store(r + 1, o + 1, a11.reduceLanes(VectorOperators.ADD) + tail(g, r + 1, o + 1, tail, k1), first);
        g.store(r + 2, o, a20.reduceLanes(VectorOperators.ADD) + tail(g, r + 2, o, tail, k1), first);
        g.store(r + 2, o + 1, a21.reduceLanes(VectorOperators.ADD) + tail(g, r + 2, o + 1, tail, k1), first);
        g.store(r + 3, o, a30.reduceLanes(VectorOperators.ADD) + tail(g, r + 3, o, tail, k1), first);
        g.store(r + 3, o + 1, a31.reduceLanes(VectorOperators.ADD) + tail(g, r + 3, o + 1, tail, k1), first);
    }

    /** out[r, o..o+3] for single rows and o in quads: f32 weights, four weight streams at once (decode). */
    private static void f32Rows1(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        long ws = 4L * g.k();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o += 4) {
            long wb = 4L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r++) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector a0 = FloatVector.zero(F);
                FloatVector a1 = a0;
                FloatVector a2 = a0;
                FloatVector a3 = a0;
                for (int i = 0; i < full; i += L) {
                    FloatVector xv = act(x, xb + 4L * i);
                    long wo = wb + 4L * i;
                    a0 = xv.fma(f32(w, wo), a0);
                    a1 = xv.fma(f32(w, wo + ws), a1);
                    a2 = xv.fma(f32(w, wo + 2 * ws), a2);
                    a3 = xv.fma(f32(w, wo + 3 * ws), a3);
                }
                store1x4(g, r, o, k0 + full, k1, first, a0, a1, a2, a3);
            }
        }
    }

    /** out[r, o..o+3] for single rows and o in quads: bf16 weights, four weight streams at once (decode). */
    private static void bf16Rows1(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        long ws = 2L * g.k();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o += 4) {
            long wb = 2L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r++) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector a0 = FloatVector.zero(F);
                FloatVector a1 = a0;
                FloatVector a2 = a0;
                FloatVector a3 = a0;
                for (int i = 0; i < full; i += L) {
                    FloatVector xv = act(x, xb + 4L * i);
                    long wo = wb + 2L * i;
                    a0 = xv.fma(bf16(w, wo), a0);
                    a1 = xv.fma(bf16(w, wo + ws), a1);
                    a2 = xv.fma(bf16(w, wo + 2 * ws), a2);
                    a3 = xv.fma(bf16(w, wo + 3 * ws), a3);
                }
                store1x4(g, r, o, k0 + full, k1, first, a0, a1, a2, a3);
            }
        }
    }

    private static void store1x4(Gemm g, int r, int o, int tail, int k1, boolean first, FloatVector a0,
                                 FloatVector a1, FloatVector a2, FloatVector a3) {
        g.store(r, o, a0.reduceLanes(VectorOperators.ADD) + tail(g, r, o, tail, k1), first);
        g.store(r, o + 1, a1.reduceLanes(VectorOperators.ADD) + tail(g, r, o + 1, tail, k1), first);
        g.store(r, o + 2, a2.reduceLanes(VectorOperators.ADD) + tail(g, r, o + 2, tail, k1), first);
        g.store(r, o + 3, a3.reduceLanes(VectorOperators.ADD) + tail(g, r, o + 3, tail, k1), first);
    }

    /** out[r..r+3, o] for r in blocks of 4, every o: fp16 weights, each converted vector used 4 times. */
    private static void f16Rows4(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        long xs = 4L * g.xStride();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o++) {
            long wb = 2L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r += 4) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector a0 = FloatVector.zero(F);
                FloatVector a1 = a0;
                FloatVector a2 = a0;
                FloatVector a3 = a0;
                for (int i = 0; i < full; i += L) {
                    FloatVector wv = f16(w, wb + 2L * i);
                    long xo = xb + 4L * i;
                    a0 = act(x, xo).fma(wv, a0);
                    a1 = act(x, xo + xs).fma(wv, a1);
                    a2 = act(x, xo + 2 * xs).fma(wv, a2);
                    a3 = act(x, xo + 3 * xs).fma(wv, a3);
                }
                int tail = k0 + full;
                g.store(r, o, a0.reduceLanes(VectorOperators.ADD) + tail(g, r, o, tail, k1), first);
                g.store(r + 1, o, a1.reduceLanes(VectorOperators.ADD) + tail(g, r + 1, o, tail, k1), first);
                g.store(r + 2, o, a2.reduceLanes(VectorOperators.ADD) + tail(g, r + 2, o, tail, k1), first);
                g.store(r + 3, o, a3.reduceLanes(VectorOperators.ADD) + tail(g, r + 3, o, tail, k1), first);
            }
        }
    }

    /** out[r, o] one dot at a time for every r and o given: f32 weights (leftover weight rows). */
    private static void f32Dots(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o++) {
            long wb = 4L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r++) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < full; i += L) {
                    acc = act(x, xb + 4L * i).fma(f32(w, wb + 4L * i), acc);
                }
                g.store(r, o, acc.reduceLanes(VectorOperators.ADD) + tail(g, r, o, k0 + full, k1), first);
            }
        }
    }

    /** out[r, o] one dot at a time for every r and o given: bf16 weights (leftover weight rows). */
    private static void bf16Dots(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o++) {
            long wb = 2L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r++) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < full; i += L) {
                    acc = act(x, xb + 4L * i).fma(bf16(w, wb + 2L * i), acc);
                }
                g.store(r, o, acc.reduceLanes(VectorOperators.ADD) + tail(g, r, o, k0 + full, k1), first);
            }
        }
    }

    /** out[r, o] one dot at a time for every r and o given: fp16 weights (decode rows, row tails). */
    private static void f16Dots(Gemm g, int r0, int r1, int o0, int o1, int k0, int k1, boolean first) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int full = (k1 - k0) - (k1 - k0) % L;
        for (int o = o0; o < o1; o++) {
            long wb = 2L * ((long) o * g.k() + k0);
            for (int r = r0; r < r1; r++) {
                long xb = 4L * ((long) r * g.xStride() + k0);
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < full; i += L) {
                    acc = act(x, xb + 4L * i).fma(f16(w, wb + 2L * i), acc);
                }
                g.store(r, o, acc.reduceLanes(VectorOperators.ADD) + tail(g, r, o, k0 + full, k1), first);
            }
        }
    }

    /**
     * Σ_{from ≤ k < to} x[r, k] · w[o, k] in scalar code: the last k not filling a vector (and all of k
     * for LoRA ranks below the vector length). Masked vector loads would do the same, but C2 compiles
     * them to a slow path here (rank 8 ran 2× slower than rank 16).
     */
    private static float tail(Gemm g, int r, int o, int from, int to) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        long xi = (long) r * g.xStride();
        long wi = (long) o * g.k();
        float sum = 0;
        switch (g.wType()) {
            case F32 -> {
                for (int k = from; k < to; k++) {
                    sum += x.getAtIndex(JAVA_FLOAT, xi + k) * w.get(CpuTensor.FLOAT_LE, 4 * (wi + k));
                }
            }
            case BF16 -> {
                for (int k = from; k < to; k++) {
                    sum += x.getAtIndex(JAVA_FLOAT, xi + k) * DType.bf16ToFloat(w.get(CpuTensor.SHORT_LE, 2 * (wi + k)));
                }
            }
            case F16 -> {
                for (int k = from; k < to; k++) {
                    sum += x.getAtIndex(JAVA_FLOAT, xi + k) * Float.float16ToFloat(w.get(CpuTensor.SHORT_LE, 2 * (wi + k)));
                }
            }
        }
        return sum;
    }

    // ---- transposed form (LoRA expand over many rows) ---------------------------------------------

    /**
     * out[r, o:o+L] += scale · Σ_k x[r, k] · wᵀ[k, o:o+L] for blocks of L outputs: wᵀ[k, j] = w[o + j, k]
     * is built once per block (k · L scalar conversions) and then every row costs k vector FMAs per L
     * outputs with no reduction. The dot form needs a lane reduction and a scalar store per output,
     * which for k = rank costs more than the arithmetic (rank 32, 64 rows: 4.4 ms dot form).
     */
    private static void transposedK(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        MemorySegment out = g.out();
        int k = g.k();
        float[] wt = TRANSPOSED.get();
        FloatVector scale = FloatVector.broadcast(F, g.scale());
        for (int o = o0; o < o1; o += L) {
            transpose(w, g.wType(), k, o, wt);
            for (int r = r0; r < r1; r++) {
                long xi = (long) r * g.xStride();
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < k; i++) {
                    acc = FloatVector.fromArray(F, wt, i * L).fma(FloatVector.broadcast(F, x.getAtIndex(JAVA_FLOAT, xi + i)), acc);
                }
                long yb = 4 * (g.outOffset() + (long) r * g.outStride() + o);
                acc.fma(scale, act(out, yb)).intoMemorySegment(out, yb, NATIVE);
            }
        }
    }

    /** wt[i · L + j] = w[o + j, i] as float, for j &lt; L and i &lt; k. */
    private static void transpose(MemorySegment w, DType type, int k, int o, float[] wt) {
        for (int j = 0; j < L; j++) {
            long row = (long) (o + j) * k;
            switch (type) {
                case F32 -> {
                    for (int i = 0; i < k; i++) {
                        wt[i * L + j] = w.get(CpuTensor.FLOAT_LE, 4 * (row + i));
                    }
                }
                case BF16 -> {
                    for (int i = 0; i < k; i++) {
                        wt[i * L + j] = DType.bf16ToFloat(w.get(CpuTensor.SHORT_LE, 2 * (row + i)));
                    }
                }
                case F16 -> {
                    for (int i = 0; i < k; i++) {
                        wt[i * L + j] = Float.float16ToFloat(w.get(CpuTensor.SHORT_LE, 2 * (row + i)));
                    }
                }
            }
        }
    }

    // ---- narrow k (LoRA expand: k = rank) -----------------------------------------------------------

    /**
     * Products with k &lt; 2L (LoRA expand with rank below twice the vector length): one dot per output
     * without a k loop, the x row loaded once per row. The tiled micro-kernels, or a k loop that runs
     * once per output, cost several times the arithmetic here (measured: rank 16, 64 rows × 4096
     * outputs, 3.3 ms with a loop, 0.55 ms without).
     */
    private static void narrowK(Gemm g, int r0, int r1, int o0, int o1) {
        int k = g.k();
        if (k >= L) {
            switch (g.wType()) {
                case F32 -> oneVectorKF32(g, r0, r1, o0, o1);
                case BF16 -> oneVectorKBf16(g, r0, r1, o0, o1);
                case F16 -> oneVectorKF16(g, r0, r1, o0, o1);
            }
        } else if (k >= HL && HL < L) {
            switch (g.wType()) {
                case F32 -> halfKF32(g, r0, r1, o0, o1);
                case BF16 -> halfKBf16(g, r0, r1, o0, o1);
                case F16 -> halfKF16(g, r0, r1, o0, o1);
            }
        } else {
            for (int r = r0; r < r1; r++) {
                for (int o = o0; o < o1; o++) {
                    g.store(r, o, tail(g, r, o, 0, k), true);
                }
            }
        }
    }

    /** L ≤ k &lt; 2L (rank 16 with 16 lanes): one full vector per output plus a scalar tail. */
    private static void oneVectorKF32(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        for (int r = r0; r < r1; r++) {
            FloatVector xv = act(x, 4L * r * g.xStride());
            for (int o = o0; o < o1; o++) {
                g.store(r, o, xv.mul(f32(w, 4L * o * k)).reduceLanes(VectorOperators.ADD) + tail(g, r, o, L, k), true);
            }
        }
    }

    private static void oneVectorKBf16(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        for (int r = r0; r < r1; r++) {
            FloatVector xv = act(x, 4L * r * g.xStride());
            for (int o = o0; o < o1; o++) {
                g.store(r, o, xv.mul(bf16(w, 2L * o * k)).reduceLanes(VectorOperators.ADD) + tail(g, r, o, L, k), true);
            }
        }
    }

    private static void oneVectorKF16(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        for (int r = r0; r < r1; r++) {
            FloatVector xv = act(x, 4L * r * g.xStride());
            for (int o = o0; o < o1; o++) {
                g.store(r, o, xv.mul(f16(w, 2L * o * k)).reduceLanes(VectorOperators.ADD) + tail(g, r, o, L, k), true);
            }
        }
    }

    /** L/2 ≤ k &lt; L (rank 8 with 16 lanes): one half-width vector per output plus a scalar tail. */
    private static void halfKF32(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        for (int r = r0; r < r1; r++) {
            long xb = 4L * r * g.xStride();
            FloatVector xv = FloatVector.fromMemorySegment(H, x, xb, NATIVE);
            for (int o = o0; o < o1; o++) {
                FloatVector wv = FloatVector.fromMemorySegment(H, w, 4L * o * k, LE);
                g.store(r, o, xv.mul(wv).reduceLanes(VectorOperators.ADD) + tail(g, r, o, HL, k), true);
            }
        }
    }

    private static void halfKBf16(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        for (int r = r0; r < r1; r++) {
            long xb = 4L * r * g.xStride();
            FloatVector xv = FloatVector.fromMemorySegment(H, x, xb, NATIVE);
            for (int o = o0; o < o1; o++) {
                FloatVector wv = ShortVector.fromMemorySegment(HS, w, 2L * o * k, LE)
                        .convertShape(VectorOperators.ZERO_EXTEND_S2I, HI, 0).reinterpretAsInts()
                        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
                g.store(r, o, xv.mul(wv).reduceLanes(VectorOperators.ADD) + tail(g, r, o, HL, k), true);
            }
        }
    }

    private static void halfKF16(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        for (int r = r0; r < r1; r++) {
            long xb = 4L * r * g.xStride();
            FloatVector xv = FloatVector.fromMemorySegment(H, x, xb, NATIVE);
            for (int o = o0; o < o1; o++) {
                // the exact half → single conversion of f16Bits, at half width
                IntVector h = (IntVector) ShortVector.fromMemorySegment(HS, w, 2L * o * k, LE).convertShape(VectorOperators.S2I, HI, 0);
                IntVector magnitude = h.lanewise(VectorOperators.LSHL, 17).lanewise(VectorOperators.LSHR, 4);
                IntVector infNan = magnitude.and(0x0F800000).add(0x00800000)
                        .lanewise(VectorOperators.LSHL, 3).lanewise(VectorOperators.ASHR, 31).and(0x7F800000);
                FloatVector wv = magnitude.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts()
                        .or(h.and(0x80000000)).or(infNan).reinterpretAsFloats();
                g.store(r, o, xv.mul(wv).reduceLanes(VectorOperators.ADD) + tail(g, r, o, HL, k), true);
            }
        }
    }

    /** 2L ≤ k ≤ {@link #TRANSPOSED_MAX_K} in dot form (LoRA expand of 1-3 rows, rank 32-64): one dot per output. */
    private static void shortKF32(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        int full = k - k % L;
        for (int r = r0; r < r1; r++) {
            long xb = 4L * r * g.xStride();
            for (int o = o0; o < o1; o++) {
                long wb = 4L * o * k;
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < full; i += L) {
                    acc = act(x, xb + 4L * i).fma(f32(w, wb + 4L * i), acc);
                }
                g.store(r, o, acc.reduceLanes(VectorOperators.ADD) + tail(g, r, o, full, k), true);
            }
        }
    }

    private static void shortKBf16(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        int full = k - k % L;
        for (int r = r0; r < r1; r++) {
            long xb = 4L * r * g.xStride();
            for (int o = o0; o < o1; o++) {
                long wb = 2L * o * k;
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < full; i += L) {
                    acc = act(x, xb + 4L * i).fma(bf16(w, wb + 2L * i), acc);
                }
                g.store(r, o, acc.reduceLanes(VectorOperators.ADD) + tail(g, r, o, full, k), true);
            }
        }
    }

    private static void shortKF16(Gemm g, int r0, int r1, int o0, int o1) {
        MemorySegment x = g.x();
        MemorySegment w = g.w();
        int k = g.k();
        int full = k - k % L;
        for (int r = r0; r < r1; r++) {
            long xb = 4L * r * g.xStride();
            for (int o = o0; o < o1; o++) {
                long wb = 2L * o * k;
                FloatVector acc = FloatVector.zero(F);
                for (int i = 0; i < full; i += L) {
                    acc = act(x, xb + 4L * i).fma(f16(w, wb + 2L * i), acc);
                }
                g.store(r, o, acc.reduceLanes(VectorOperators.ADD) + tail(g, r, o, full, k), true);
            }
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
            s[sOff + j] = scale * (a0.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex, keys, k, full, d));
            s[sOff + j + 1] = scale * (a1.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex, keys, k + kStride, full, d));
            s[sOff + j + 2] = scale * (a2.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex, keys, k + 2L * kStride, full, d));
            s[sOff + j + 3] = scale * (a3.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex, keys, k + 3L * kStride, full, d));
        }
        for (; j < n; j++) {
            long k = kIndex + (long) j * kStride;
            FloatVector acc = FloatVector.zero(F);
            for (int i = 0; i < full; i += L) {
                acc = act(q, qb + 4L * i).fma(act(keys, 4 * k + 4L * i), acc);
            }
            s[sOff + j] = scale * (acc.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex, keys, k, full, d));
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
            s[sOff + j] = scale * (a0.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex, keys, k, full, d));
            s[sStride + sOff + j] = scale * (a1.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex + d, keys, k, full, d));
            s[2 * sStride + sOff + j] = scale * (a2.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex + 2L * d, keys, k, full, d));
            s[3 * sStride + sOff + j] = scale * (a3.reduceLanes(VectorOperators.ADD) + dotTail(q, qIndex + 3L * d, keys, k, full, d));
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
        for (int i = full; i < d; i++) {
            float sum = out.getAtIndex(JAVA_FLOAT, outIndex + i);
            for (int j = 0; j < n; j++) {
                sum += p[pOff + j] * values.getAtIndex(JAVA_FLOAT, vIndex + (long) j * vStride + i);
            }
            out.setAtIndex(JAVA_FLOAT, outIndex + i, sum);
        }
    }

    @Override
    public float expInPlace(float[] s, int offset, int n, float max) {
        int full = offset + n - n % L;
        FloatVector acc = FloatVector.zero(F);
        for (int i = offset; i < full; i += L) {
            FloatVector e = FloatVector.fromArray(F, s, i).sub(max).lanewise(VectorOperators.EXP);
            e.intoArray(s, i);
            acc = acc.add(e);
        }
        float sum = acc.reduceLanes(VectorOperators.ADD);
        for (int i = full; i < offset + n; i++) {
            s[i] = (float) Math.exp(s[i] - max);
            sum += s[i];
        }
        return sum;
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
        float sum = acc.reduceLanes(VectorOperators.ADD);
        for (int i = full; i < n; i++) {
            float v = x.getAtIndex(JAVA_FLOAT, index + i);
            sum += v * v;
        }
        return sum;
    }

    @Override
    public void scaleMul(MemorySegment x, long xIndex, float factor, MemorySegment w, long wIndex,
                         MemorySegment out, long outIndex, int n) {
        int full = n - n % L;
        for (int i = 0; i < full; i += L) {
            act(x, 4 * (xIndex + i)).mul(factor).mul(act(w, 4 * (wIndex + i))).intoMemorySegment(out, 4 * (outIndex + i), NATIVE);
        }
        for (int i = full; i < n; i++) {
            out.setAtIndex(JAVA_FLOAT, outIndex + i, x.getAtIndex(JAVA_FLOAT, xIndex + i) * factor * w.getAtIndex(JAVA_FLOAT, wIndex + i));
        }
    }

    @Override
    public void add(MemorySegment a, long aIndex, MemorySegment b, long bIndex, MemorySegment out, long outIndex, int n) {
        int full = n - n % L;
        for (int i = 0; i < full; i += L) {
            act(a, 4 * (aIndex + i)).add(act(b, 4 * (bIndex + i))).intoMemorySegment(out, 4 * (outIndex + i), NATIVE);
        }
        for (int i = full; i < n; i++) {
            out.setAtIndex(JAVA_FLOAT, outIndex + i, a.getAtIndex(JAVA_FLOAT, aIndex + i) + b.getAtIndex(JAVA_FLOAT, bIndex + i));
        }
    }

    @Override
    public void swiglu(MemorySegment gateUp, long gIndex, long uIndex, MemorySegment out, long outIndex, int n) {
        int full = n - n % L;
        for (int i = 0; i < full; i += L) {
            FloatVector g = act(gateUp, 4 * (gIndex + i));
            FloatVector u = act(gateUp, 4 * (uIndex + i));
            // silu(g) · u = g / (1 + e^−g) · u
            g.div(g.neg().lanewise(VectorOperators.EXP).add(1f)).mul(u).intoMemorySegment(out, 4 * (outIndex + i), NATIVE);
        }
        for (int i = full; i < n; i++) {
            float g = gateUp.getAtIndex(JAVA_FLOAT, gIndex + i);
            float u = gateUp.getAtIndex(JAVA_FLOAT, uIndex + i);
            out.setAtIndex(JAVA_FLOAT, outIndex + i, g / (1f + (float) Math.exp(-g)) * u);
        }
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
        for (int i = full; i < half; i++) {
            float x1 = x.getAtIndex(JAVA_FLOAT, index + i);
            float x2 = x.getAtIndex(JAVA_FLOAT, index + half + i);
            x.setAtIndex(JAVA_FLOAT, index + i, x1 * cos[i] - x2 * sin[i]);
            x.setAtIndex(JAVA_FLOAT, index + half + i, x2 * cos[i] + x1 * sin[i]);
        }
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
        for (int i = full; i < n; i++) {
            dst.setAtIndex(JAVA_FLOAT, dstIndex + i, CpuTensor.element(src, type, srcIndex + i));
        }
    }
}
