package ai.punica.backend.cpu;

import static ai.punica.backend.cpu.VectorLanes.*;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;

/**
 * The matrix product of the {@link VectorKernels}: {@code out[r, o] (+)= scale · Σ_k x[r, k] · w[o, k]}.
 *
 * <p>Matrix products use the dot-product form (x and w are both k-contiguous). Each weight row is
 * streamed once per step and dotted with several x rows held in L1, so decode (few rows) reads the
 * weight bytes once, at the memory-bandwidth limit. For prefill, rows are tiled ({@link #ROW_TILE})
 * and k is blocked ({@link #K_TILE}, above {@link #BLOCK_K_ABOVE_ROWS} rows) so the x block stays in
 * L2 and each weight slice in L1. Weights are widened to float in registers: bf16 by a 16-bit shift,
 * fp16 by an exact bit conversion (Java 25 has no vector fp16 conversion; converting blocks to a
 * float scratch first measured 2.5× slower).
 *
 * <p>LoRA's products have a narrow k (the rank) on one side: those take the narrow-k and transposed
 * forms below. See {@link VectorKernels} for why the kernels are shaped as they are.
 */
final class VectorGemm {

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

    private VectorGemm() {
    }

    /**
     * out[r, o] (+)= scale · Σ_k x[r, k] · w[o, k]. Loop order: row tile, k block, 4 weight rows, 4 x rows.
     * Within a (row tile, k block) each weight slice is read from memory once and reused from L1 by all
     * x rows of the tile.
     */
    static void gemm(Gemm g, int r0, int r1, int o0, int o1) {
        if (g.k() <= TRANSPOSED_MAX_K && g.accumulate() && r1 - r0 >= 4 && o1 - o0 >= L) {
            transposedThenDots(g, r0, r1, o0, o1);
            return;
        }
        dotForm(g, r0, r1, o0, o1, false);
    }

    /**
     * {@link #gemm} with every (row, output)'s sum in an order that depends on neither the number of
     * rows nor the split into pieces ({@code --batch-invariant}): always the dot form (the transposed
     * form adds over k lane by lane, the dot form per vector chunk and then across lanes, and which one
     * an output got depended on the row count and on where a thread's piece of outputs began), and k is
     * never blocked (blocking depended on the row tile's size). The micro-kernels (4×2, 1×4, single dots)
     * all sum one (row, output) the same way: FMA per L-lane chunk of k from k0, a lane reduction, then
     * the scalar tail.
     */
    static void gemmInvariant(Gemm g, int r0, int r1, int o0, int o1) {
        dotForm(g, r0, r1, o0, o1, true);
    }

    private static void transposedThenDots(Gemm g, int r0, int r1, int o0, int o1) {
        int oMain = o0 + (o1 - o0) / L * L;
        transposedK(g, r0, r1, o0, oMain);
        if (oMain < o1) {
            dotForm(g, r0, r1, oMain, o1, false);
        }
    }

    /** The dot-product form: narrow k directly, otherwise tiles of micro-kernels. */
    private static void dotForm(Gemm g, int r0, int r1, int o0, int o1, boolean unblocked) {
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
            int kTile = unblocked || rtEnd - rt <= BLOCK_K_ABOVE_ROWS ? k : K_TILE;
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
        g.store(r, o, sum(g, a00) + tail(g, r, o, tail, k1), first);
        g.store(r, o + 1, sum(g, a01) + tail(g, r, o + 1, tail, k1), first);
        g.store(r + 1, o, sum(g, a10) + tail(g, r + 1, o, tail, k1), first);
        g.store(r + 1, o + 1, sum(g, a11) + tail(g, r + 1, o + 1, tail, k1), first);
        g.store(r + 2, o, sum(g, a20) + tail(g, r + 2, o, tail, k1), first);
        g.store(r + 2, o + 1, sum(g, a21) + tail(g, r + 2, o + 1, tail, k1), first);
        g.store(r + 3, o, sum(g, a30) + tail(g, r + 3, o, tail, k1), first);
        g.store(r + 3, o + 1, sum(g, a31) + tail(g, r + 3, o + 1, tail, k1), first);
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
        g.store(r, o, sum(g, a0) + tail(g, r, o, tail, k1), first);
        g.store(r, o + 1, sum(g, a1) + tail(g, r, o + 1, tail, k1), first);
        g.store(r, o + 2, sum(g, a2) + tail(g, r, o + 2, tail, k1), first);
        g.store(r, o + 3, sum(g, a3) + tail(g, r, o + 3, tail, k1), first);
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
                g.store(r, o, sum(g, a0) + tail(g, r, o, tail, k1), first);
                g.store(r + 1, o, sum(g, a1) + tail(g, r + 1, o, tail, k1), first);
                g.store(r + 2, o, sum(g, a2) + tail(g, r + 2, o, tail, k1), first);
                g.store(r + 3, o, sum(g, a3) + tail(g, r + 3, o, tail, k1), first);
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
                g.store(r, o, sum(g, acc) + tail(g, r, o, k0 + full, k1), first);
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
                g.store(r, o, sum(g, acc) + tail(g, r, o, k0 + full, k1), first);
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
                g.store(r, o, sum(g, acc) + tail(g, r, o, k0 + full, k1), first);
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
                g.store(r, o, sum(g, xv.mul(f32(w, 4L * o * k))) + tail(g, r, o, L, k), true);
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
                g.store(r, o, sum(g, xv.mul(bf16(w, 2L * o * k))) + tail(g, r, o, L, k), true);
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
                g.store(r, o, sum(g, xv.mul(f16(w, 2L * o * k))) + tail(g, r, o, L, k), true);
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
                g.store(r, o, sum(g, xv.mul(wv)) + tail(g, r, o, HL, k), true);
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
                g.store(r, o, sum(g, xv.mul(wv)) + tail(g, r, o, HL, k), true);
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
                g.store(r, o, sum(g, xv.mul(wv)) + tail(g, r, o, HL, k), true);
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
                g.store(r, o, sum(g, acc) + tail(g, r, o, full, k), true);
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
                g.store(r, o, sum(g, acc) + tail(g, r, o, full, k), true);
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
                g.store(r, o, sum(g, acc) + tail(g, r, o, full, k), true);
            }
        }
    }

    /** A dot's lane sum: {@link VectorLanes#sumInOrder} for {@link Gemm#fixedOrder}, else the fastest order. */
    private static float sum(Gemm g, FloatVector v) {
        return g.fixedOrder() ? sumInOrder(v) : v.reduceLanes(VectorOperators.ADD);
    }
}
