package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.assertBitIdentical;
import static ai.punica.backend.cuda.CudaSgmvTest.assertClose;
import static ai.punica.backend.cuda.CudaSgmvTest.fill;
import static ai.punica.backend.cuda.CudaSgmvTest.iota;
import static ai.punica.backend.cuda.GpuChecks.random;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The grouped SGMV ops of {@link CudaBackend} (one launch for q|k|v or gate|up) against the
 * {@link ReferenceBackend}'s group ops and against the CUDA single ops, on seeded random bf16 data: decode
 * batches of 1 to 128 one-row segments with distinct slots (split-K shrink, one counter region per
 * projection), prefill segments up to 300 rows, ranks 4 to 64 mixed per projection and slot, slots absent
 * in some projections of the group or in all of them, a projection with no slot loaded at all, segments
 * without an adapter. Shapes: in 4096 → 4096|1024|1024 (GQA q|k|v) and 4096 → 11008|11008 (gate|up).
 *
 * <p>Each case runs 3 times on the same buffers (v poisoned with NaN each time): every run must match the
 * reference within ‖gpu − ref‖/‖ref‖ ≤ 1e-2 (bf16 outputs, fp32 accumulation), the runs must be
 * bit-identical, rows and columns a projection does not adapt must keep their bits in y, and the group
 * expand must equal the single expands bit for bit (same per-thread arithmetic); the group shrink may
 * split its inputs differently from the single shrinks, so it is compared with them within 1e-2.
 * {@link CudaBackend#matmulLora} with its shrink on the side stream must equal the one-stream op bit for bit.
 * Prints "CHECK sgmv-group ..." lines.
 */
@Tag("gpu")
class CudaSgmvGroupTest extends GpuBackendTest {
    static final double TOL = 1e-2;
    static final int RUNS = 3;
    static final int[] QKV_OUTS = {4096, 1024, 1024};
    static final int[] GATE_UP_OUTS = {11008, 11008};

    /**
     * A grouped SGMV problem: input size, each projection's output size (written side by side into y from
     * column {@code yCol0}), segments, {@code ranks[m][slot]} (0: slot absent in projection m), and the
     * rank-space width per projection {@code w} (v is {@code n·w + extra} wide).
     */
    record GroupCase(String name, int in, int[] outs, int yCol0, int[] segLens, int[] segSlots, int[][] ranks, int w,
                     int extra) {
        int n() {
            return outs.length;
        }

        int vCols() {
            return n() * w + extra;
        }

        int[] yCols() {
            int[] cols = new int[n()];
            int c = yCol0;
            for (int m = 0; m < n(); m++) {
                cols[m] = c;
                c += outs[m];
            }
            return cols;
        }

        int yWidth() {
            return yCol0 + Arrays.stream(outs).sum() + 3;
        }
    }

    void check(GroupCase c, long seed) {
        check(c, seed, gpu);
    }

    /** {@link #check(GroupCase, long)} on {@code gpu} (a backend with other switches than the class's). */
    void check(GroupCase c, long seed, CudaBackend gpu) {
        SplittableRandom rng = new SplittableRandom(seed);
        int n = c.n();
        int slots = c.ranks()[0].length;
        List<LoraWeights> gGroup = new ArrayList<>();
        List<LoraWeights> rGroup = new ArrayList<>();
        List<Tensor> gOwned = new ArrayList<>();
        for (int m = 0; m < n; m++) {
            LoraWeights gW = LoraWeights.empty(slots);
            LoraWeights rW = LoraWeights.empty(slots);
            for (int s = 0; s < slots; s++) {
                int rank = c.ranks()[m][s];
                if (rank == 0) {
                    continue;
                }
                TensorData a = TensorData.of("A" + m + "." + s, DType.BF16, rank, c.in(), random(rng, rank * c.in(), 0.05));
                TensorData b = TensorData.of("B" + m + "." + s, DType.BF16, c.outs()[m], rank,
                        random(rng, c.outs()[m] * rank, 0.1));
                gW.a()[s] = gpu.loadWeight(a);
                gW.b()[s] = gpu.loadWeight(b);
                rW.a()[s] = ref.loadWeight(a);
                rW.b()[s] = ref.loadWeight(b);
                gOwned.add(gW.a()[s]);
                gOwned.add(gW.b()[s]);
                gW.rank()[s] = rW.rank()[s] = rank;
                gW.scale()[s] = rW.scale()[s] = (float) (16.0 / rank) * (m + 1);
            }
            gGroup.add(gW);
            rGroup.add(rW);
        }
        int[] starts = new int[c.segLens().length + 1];
        for (int i = 0; i < c.segLens().length; i++) {
            starts[i + 1] = starts[i] + c.segLens()[i];
        }
        int rows = starts[c.segLens().length];
        Segments segments = new Segments(starts, c.segSlots());
        int vCols = c.vCols();
        int yWidth = c.yWidth();
        int[] yCols = c.yCols();
        float[] xv = random(rng, rows * c.in(), 1);
        float[] y0 = random(rng, rows * yWidth, 0.5);
        float[] poison = new float[rows * vCols];
        Arrays.fill(poison, Float.NaN);

        Tensor gx = gpu.allocate(rows, c.in());
        Tensor gv = gpu.allocate(rows, vCols);
        Tensor gvSingle = gpu.allocate(rows, vCols);
        Tensor gy = gpu.allocate(rows, yWidth);
        Tensor gySingle = gpu.allocate(rows, yWidth);
        Tensor rx = ref.allocate(rows, c.in());
        Tensor rv = ref.allocate(rows, vCols);
        Tensor ry = ref.allocate(rows, yWidth);
        gpu.upload(xv, gx);
        ref.upload(xv, rx);
        ref.upload(poison, rv);
        ref.sgmvShrinkGroup(rx, rGroup, segments, rv);
        float[] refV = download(ref, rv);

        String what = c.name() + " [" + SgmvTiles.count(rows, slots) + " tiles]";
        float[] firstV = null;
        float[] firstY = null;
        for (int run = 0; run < RUNS; run++) {
            gpu.upload(poison, gv);
            gpu.upload(poison, gvSingle);
            gpu.sgmvShrinkGroup(gx, gGroup, segments, gv);
            for (int m = 0; m < n; m++) {
                gpu.sgmvShrink(gx, gGroup.get(m), segments, gvSingle, m * c.w());
            }
            float[] v = download(gpu, gv);
            float[] vSingle = download(gpu, gvSingle);
            float[] definedV = defined(v, c, starts);
            assertClose("group shrink vs reference " + what + " run " + run, definedV, defined(refV, c, starts), TOL);
            assertClose("group shrink vs single shrinks " + what + " run " + run, definedV, defined(vSingle, c, starts), TOL);

            // Expand from the GPU's own v, so that the check sees only the expand kernel's error.
            ref.upload(v, rv);
            ref.upload(y0, ry);
            ref.sgmvExpandGroup(rv, rGroup, segments, ry, yCols);
            gpu.upload(y0, gy);
            gpu.upload(y0, gySingle);
            gpu.sgmvExpandGroup(gv, gGroup, segments, gy, yCols);
            for (int m = 0; m < n; m++) {
                gpu.sgmvExpand(gv, m * c.w(), gGroup.get(m), segments, gySingle, yCols[m]);
            }
            float[] y = download(gpu, gy);
            float[] yRef = download(ref, ry);
            float[] ySingle = download(gpu, gySingle);
            assertClose("group expand vs reference " + what + " run " + run + " (all of y)", y, yRef, TOL);
            float[] added = GpuChecks.added(y, y0);
            float[] addedRef = GpuChecks.added(yRef, y0);
            assertClose("group expand vs reference " + what + " run " + run + " (added part)", added, addedRef, 2 * TOL);
            assertBitIdentical(String.format("%s: group expand equals the single expands bit for bit", c.name()), y, ySingle);
            checkUntouched(c, starts, y, y0);
            if (run == 0) {
                firstV = definedV;
                firstY = y;
            } else {
                assertBitIdentical(String.format("%s: shrink run %d equals run 0 bit for bit", c.name(), run), definedV, firstV);
                assertBitIdentical(String.format("%s: expand run %d equals run 0 bit for bit", c.name(), run), y, firstY);
            }
        }
        System.out.printf("CHECK sgmv-group %-80s %d runs bit-identical, expand = single expands ok%n", what, RUNS);
        for (Tensor t : gOwned) {
            gpu.free(t);
        }
        for (Tensor t : new Tensor[] {gx, gv, gvSingle, gy, gySingle}) {
            gpu.free(t);
        }
    }

    /** y keeps its bits outside every projection's columns, and in a projection's columns on rows it does not adapt. */
    static void checkUntouched(GroupCase c, int[] starts, float[] y, float[] y0) {
        int yWidth = c.yWidth();
        int[] yCols = c.yCols();
        for (int i = 0; i < c.segLens().length; i++) {
            int slot = c.segSlots()[i];
            for (int r = starts[i]; r < starts[i + 1]; r++) {
                for (int col = 0; col < yWidth; col++) {
                    boolean adapted = false;
                    for (int m = 0; m < c.n(); m++) {
                        if (col >= yCols[m] && col < yCols[m] + c.outs()[m]) {
                            adapted = slot >= 0 && c.ranks()[m][slot] > 0;
                        }
                    }
                    if (!adapted) {
                        assertThat(y[r * yWidth + col]).as("%s: untouched y[%d, %d]", c.name(), r, col)
                                .isEqualTo(y0[r * yWidth + col]);
                    }
                }
            }
        }
    }

    /** The elements of v the contract defines: columns [m·w, m·w + rank) of rows whose slot projection m has. */
    static float[] defined(float[] v, GroupCase c, int[] starts) {
        List<Float> out = new ArrayList<>();
        for (int m = 0; m < c.n(); m++) {
            for (int i = 0; i < c.segLens().length; i++) {
                int slot = c.segSlots()[i];
                if (slot < 0 || c.ranks()[m][slot] == 0) {
                    continue;
                }
                for (int r = starts[i]; r < starts[i + 1]; r++) {
                    for (int k = 0; k < c.ranks()[m][slot]; k++) {
                        out.add(v[r * c.vCols() + m * c.w() + k]);
                    }
                }
            }
        }
        float[] a = new float[out.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = out.get(i);
        }
        return a;
    }

    static float[] download(Backend backend, Tensor t) {
        float[] out = new float[t.rows() * t.cols()];
        backend.download(t, out);
        return out;
    }

    /** ranks[m][slot] from {4, 8, 12, 16, 32, 64}, about one in five absent (0) per projection. */
    static int[][] mixedRanks(int n, int slots, SplittableRandom rng) {
        return mixedRanks(n, slots, rng, 64);
    }

    /** {@link #mixedRanks(int, int, SplittableRandom)} with the choices up to {@code maxRank} (and 5). */
    static int[][] mixedRanks(int n, int slots, SplittableRandom rng, int maxRank) {
        int[] choices = Arrays.stream(new int[] {4, 5, 8, 12, 16, 32, 64}).filter(r -> r <= maxRank).toArray();
        int[][] ranks = new int[n][slots];
        for (int m = 0; m < n; m++) {
            for (int s = 0; s < slots; s++) {
                ranks[m][s] = rng.nextInt(5) == 0 ? 0 : choices[rng.nextInt(choices.length)];
            }
        }
        return ranks;
    }

    @Test
    void decodeBatchesOfDistinctAdaptersMatchReference() {
        long seed = 1000;
        for (int batch : new int[] {1, 2, 7, 32, 64, 128}) {
            for (int[] outs : new int[][] {QKV_OUTS, GATE_UP_OUTS}) {
                int[][] ranks = mixedRanks(outs.length, batch, new SplittableRandom(seed));
                ranks[0][0] = 16;
                String shape = outs.length == 3 ? "q|k|v 4096→4096|1024|1024" : "gate|up 4096→11008|11008";
                check(new GroupCase("decode b" + batch + " mixed ranks " + shape, 4096, outs, 0, fill(batch, 1),
                        iota(batch), ranks, 64, 0), seed++);
            }
        }
    }

    @Test
    void decodeWithSegmentsWithoutAdapterAndAProjectionWithNoSlotMatchesReference() {
        int batch = 40;
        int[] slots = new int[batch];
        for (int i = 0; i < batch; i++) {
            slots[i] = i % 9 == 8 ? -1 : i;
        }
        int[][] ranks = mixedRanks(3, batch, new SplittableRandom(2000));
        Arrays.fill(ranks[1], 0); // k adapted by no slot: its output blocks all exit
        check(new GroupCase("decode b40, -1 segments, k without any slot, q|k|v", 4096, QKV_OUTS, 0, fill(batch, 1),
                slots, ranks, 64, 0), 2001);
        int[][] gu = mixedRanks(2, batch, new SplittableRandom(2002));
        Arrays.fill(gu[0], 0);
        check(new GroupCase("decode b40, -1 segments, gate without any slot, gate|up", 4096, GATE_UP_OUTS, 0,
                fill(batch, 1), slots, gu, 64, 0), 2003);
    }

    @Test
    void prefillSegmentsUpToThreeHundredRowsMatchReference() {
        int[] lens = {1, 3, 8, 9, 17, 300, 129, 64};
        int[] segSlots = {0, 1, 2, 3, -1, 4, 5, 6};
        check(new GroupCase("prefill segs 1..300 mixed ranks, q|k|v", 4096, QKV_OUTS, 0, lens, segSlots,
                mixedRanks(3, 7, new SplittableRandom(3000)), 64, 0), 3001);
        check(new GroupCase("prefill segs 1..300 mixed ranks, gate|up", 4096, GATE_UP_OUTS, 0, lens, segSlots,
                mixedRanks(2, 7, new SplittableRandom(3002)), 64, 0), 3003);
        check(new GroupCase("mixed step: 6 decode rows + prefill 200 rows, q|k|v", 4096, QKV_OUTS, 0,
                new int[] {1, 1, 1, 200, 1, 1, 1}, iota(7), mixedRanks(3, 7, new SplittableRandom(3004)), 64, 0), 3005);
        // 128-row decode steps with 128 slots (128 tiles): skewed (long and short segments: row tiles) and one
        // adapter (tensor cores).
        int[][] skewedRanks = mixedRanks(3, 128, new SplittableRandom(3006));
        skewedRanks[0][0] = 16;
        check(new GroupCase("decode b128 skewed 70|30|10|5|5|4|2|1|1 of 128 slots, q|k|v", 4096, QKV_OUTS, 0,
                new int[] {70, 30, 10, 5, 5, 4, 2, 1, 1}, iota(9), skewedRanks, 64, 0), 3007);
        int[][] oneRanks = mixedRanks(2, 128, new SplittableRandom(3008));
        oneRanks[0][0] = 16;
        oneRanks[1][0] = 8;
        check(new GroupCase("decode b128 one adapter of 128 slots, gate|up", 4096, GATE_UP_OUTS, 0, new int[] {128},
                iota(1), oneRanks, 64, 0), 3009);
    }

    @Test
    void oddWidthsOffsetsAndOneProjectionMatchReference() {
        // v wider than n·w (w = v.cols / n rounds down), y with a leading offset, odd sizes.
        check(new GroupCase("odd in 1000 → 999|77|5 at col 3, w 40 + 2 extra, decode b6", 1000, new int[] {999, 77, 5}, 3,
                fill(6, 1), new int[] {0, 1, 2, 4, -1, 5}, mixedRanks(3, 6, new SplittableRandom(4000), 40), 40, 2), 4001);
        check(new GroupCase("odd in 2003 (scalar loads, split-K) → 300|300, w 33, prefill", 2003, new int[] {300, 300}, 0,
                new int[] {13, 1, 30}, new int[] {0, 1, -1}, new int[][] {{5, 12}, {33, 0}}, 33, 1), 4003);
        check(new GroupCase("group of one: down 11008→4096, decode b32", 11008, new int[] {4096}, 0, fill(32, 1),
                iota(32), mixedRanks(1, 32, new SplittableRandom(4004)), 64, 0), 4005);
    }

    @Test
    void groupOpsReplayBitIdenticallyInACudaGraph() {
        SplittableRandom rng = new SplittableRandom(5000);
        int rows = 32;
        int in = 4096;
        int w = 64;
        Tensor x = gpu.allocate(rows, in);
        Tensor v = gpu.allocate(rows, 3 * w);
        Tensor y = gpu.allocate(rows, 6144);
        gpu.upload(random(rng, rows * in, 1), x);
        float[] y0 = random(rng, rows * 6144, 0.5);
        int[][] ranks = mixedRanks(3, rows, rng);
        List<LoraWeights> group = new ArrayList<>();
        List<Tensor> owned = new ArrayList<>();
        for (int m = 0; m < 3; m++) {
            LoraWeights lw = LoraWeights.empty(rows);
            for (int s = 0; s < rows; s++) {
                int r = ranks[m][s];
                if (r == 0) {
                    continue;
                }
                lw.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, r, in, random(rng, r * in, 0.05)));
                lw.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, QKV_OUTS[m], r, random(rng, QKV_OUTS[m] * r, 0.1)));
                lw.rank()[s] = r;
                lw.scale()[s] = 1f;
                owned.add(lw.a()[s]);
                owned.add(lw.b()[s]);
            }
            group.add(lw);
        }
        Segments seg = new Segments(iota(rows + 1), iota(rows));
        int[] yCols = {0, 4096, 5120};
        Runnable step = () -> {
            gpu.sgmvShrinkGroup(x, group, seg, v);
            gpu.sgmvExpandGroup(v, group, seg, y, yCols);
        };
        gpu.upload(y0, y);
        step.run();
        float[] eager = download(gpu, y);
        float[] poison = new float[rows * 3 * w];
        Arrays.fill(poison, Float.NaN);
        try (CudaBackend.CudaGraph graph = gpu.capture(step)) {
            for (int replay = 0; replay < 5; replay++) {
                gpu.upload(poison, v);
                gpu.upload(y0, y);
                graph.launch();
                assertBitIdentical(String.format("replay %d", replay), download(gpu, y), eager);
            }
        }
        System.out.println("CHECK sgmv-group graph replay of q|k|v shrink+expand (split-K, b32) x5 bit-identical ok");
        for (Tensor t : owned) {
            gpu.free(t);
        }
        for (Tensor t : new Tensor[] {x, v, y}) {
            gpu.free(t);
        }
    }

    /** Up to 3 projections' LoRA weights on the GPU and on the reference, from the same seeded data. */
    record LoadedGroup(CudaBackend device, List<LoraWeights> gpu, List<LoraWeights> ref, List<Tensor> owned) {
        void free() {
            for (Tensor t : owned) {
                device.free(t);
            }
        }
    }

    static LoadedGroup loadGroup(SplittableRandom rng, int in, int[] outs, int[][] ranks) {
        return loadGroup(gpu, rng, in, outs, ranks);
    }

    /** The group on {@code gpu} (one of several backends a test compares; the same seed gives the same weights). */
    static LoadedGroup loadGroup(CudaBackend gpu, SplittableRandom rng, int in, int[] outs, int[][] ranks) {
        List<LoraWeights> g = new ArrayList<>();
        List<LoraWeights> r = new ArrayList<>();
        List<Tensor> owned = new ArrayList<>();
        for (int m = 0; m < outs.length; m++) {
            int slots = ranks[m].length;
            LoraWeights lw = LoraWeights.empty(slots);
            LoraWeights rw = LoraWeights.empty(slots);
            for (int s = 0; s < slots; s++) {
                int rank = ranks[m][s];
                if (rank == 0) {
                    continue;
                }
                TensorData a = TensorData.of("a", DType.BF16, rank, in, random(rng, rank * in, 0.05));
                TensorData b = TensorData.of("b", DType.BF16, outs[m], rank, random(rng, outs[m] * rank, 0.1));
                lw.a()[s] = gpu.loadWeight(a);
                lw.b()[s] = gpu.loadWeight(b);
                rw.a()[s] = ref.loadWeight(a);
                rw.b()[s] = ref.loadWeight(b);
                lw.rank()[s] = rw.rank()[s] = rank;
                lw.scale()[s] = rw.scale()[s] = (float) (16.0 / rank);
                owned.add(lw.a()[s]);
                owned.add(lw.b()[s]);
            }
            g.add(lw);
            r.add(rw);
        }
        return new LoadedGroup(gpu, g, r, owned);
    }

    static Segments segments(int[] lens, int[] slots) {
        int[] starts = new int[lens.length + 1];
        for (int i = 0; i < lens.length; i++) {
            starts[i + 1] = starts[i] + lens[i];
        }
        return new Segments(starts, slots);
    }

    static int[] columns(int[] outs) {
        int[] cols = new int[outs.length];
        for (int m = 1; m < outs.length; m++) {
            cols[m] = cols[m - 1] + outs[m - 1];
        }
        return cols;
    }

    /**
     * {@link CudaBackend#matmulLora} on a decode step takes the fused cluster kernel (sm_90): its result must
     * match the reference's shrink + expand added to the same GEMM output, and the two-launch path's; rows
     * without an adapter must keep the GEMM's bits; repeated runs and CUDA-graph replays must be bit-identical.
     * Ranks 4 to 64 mixed per projection (and rank 5 and 12: B rows not a multiple of 8), absent slots, rows
     * without an adapter, an odd input size (scalar loads), q|k|v with GQA, gate|up and down_proj shapes.
     */
    @Test
    void fusedDecodeLoraMatchesTheReferenceAndTheTwoLaunchPath() {
        fusedDecodeLoraMatches(false);
    }

    /**
     * The same with {@link CudaOptions#wideClusters()}: launches whose clusters of 4 would be fewer blocks than SMs
     * (down at 32 rows, the odd case at 12 rows, b1 and b7) take clusters of 8; the others (q|k|v at 32 and 64 rows,
     * gate|up at 32) keep 4.
     */
    @Test
    void fusedDecodeLoraInWideClustersMatchesTheReferenceAndTheTwoLaunchPath() {
        fusedDecodeLoraMatches(true);
    }

    private void fusedDecodeLoraMatches(boolean wide) {
        SplittableRandom rng = new SplittableRandom(7000);
        record Case(String name, int in, int[] outs, int batch, boolean withoutAdapter) {
        }
        List<Case> cases = List.of(new Case("q|k|v GQA b1", 4096, QKV_OUTS, 1, false),
                new Case("q|k|v GQA b32", 4096, QKV_OUTS, 32, false),
                new Case("q|k|v GQA b64 with rows without adapter", 4096, QKV_OUTS, 64, true),
                new Case("gate|up b7", 4096, GATE_UP_OUTS, 7, false),
                new Case("gate|up b32", 4096, GATE_UP_OUTS, 32, true),
                new Case("down 11008→4096 b32", 11008, new int[] {4096}, 32, false),
                new Case("odd in 1001 → 999|72 b12", 1001, new int[] {999, 72}, 12, true));
        // The fused kernel for every decode batch (no tile threshold) on one backend, the two launches on the other.
        try (CudaBackend fusedGpu = GpuChecks.open(o -> o.fusedLora(true).fusedMinTiles(0).wideClusters(wide));
             CudaBackend twoLaunchGpu = GpuChecks.open(o -> o.fusedLora(false))) {
            for (Case c : cases) {
                int n = c.outs().length;
                int total = Arrays.stream(c.outs()).sum();
                int[] cols = columns(c.outs());
                int slots = c.batch();
                int[][] ranks = mixedRanks(n, slots, rng);
                ranks[0][0] = 5;
                if (slots > 1) {
                    ranks[n - 1][1] = 12;
                }
                long groupSeed = rng.nextLong();
                LoadedGroup group = loadGroup(fusedGpu, new SplittableRandom(groupSeed), c.in(), c.outs(), ranks);
                LoadedGroup twoGroup = loadGroup(twoLaunchGpu, new SplittableRandom(groupSeed), c.in(), c.outs(), ranks);
                int[] segSlots = iota(c.batch());
                if (c.withoutAdapter()) {
                    for (int i = 2; i < c.batch(); i += 5) {
                        segSlots[i] = -1;
                    }
                }
                Segments seg = segments(fill(c.batch(), 1), segSlots);
                int rows = c.batch();
                TensorData wData = TensorData.of("w", DType.BF16, total, c.in(), random(rng, total * c.in(), 0.02));
                float[] xData = random(rng, rows * c.in(), 1);
                OnDevice fusedOp = new OnDevice(fusedGpu, rows, c.in(), n * 64, total, wData, xData);
                OnDevice twoOp = new OnDevice(twoLaunchGpu, rows, c.in(), n * 64, total, wData, xData);
                Runnable op = () -> fusedOp.matmulLora(group, seg, cols);

                fusedGpu.matmul(fusedOp.x(), fusedOp.w(), null, fusedOp.y());
                float[] gemm = download(fusedGpu, fusedOp.y());
                twoOp.matmulLora(twoGroup, seg, cols);
                float[] twoLaunches = download(twoLaunchGpu, twoOp.y());
                long launchesBefore = fusedGpu.fusedLaunches();
                long wideBefore = fusedGpu.fusedWideLaunches();
                op.run();
                float[] fused = download(fusedGpu, fusedOp.y());
                assertThat(fusedGpu.fusedLaunches()).as(c.name() + ": the fused kernel ran").isEqualTo(launchesBefore + 1);
                boolean wideWanted = wide && 4L * c.batch() * n < fusedGpu.multiprocessors();
                assertThat(fusedGpu.fusedWideLaunches() - wideBefore).as(c.name() + ": clusters of 8")
                        .isEqualTo(wideWanted ? 1 : 0);
                op.run();
                assertBitIdentical(c.name() + ": fused run 2 equals run 1", download(fusedGpu, fusedOp.y()), fused);
                try (CudaBackend.CudaGraph graph = fusedGpu.capture(op)) {
                    for (int replay = 0; replay < 3; replay++) {
                        graph.launch();
                        assertBitIdentical(c.name() + ": fused graph replay " + replay, download(fusedGpu, fusedOp.y()), fused);
                    }
                }
                // The reference LoRA on the GPU's GEMM output: y = gemm + Σ_m scale·(x·Aᵀ)·Bᵀ at the projection's columns.
                Tensor rx = ref.allocate(rows, c.in());
                Tensor ry = ref.allocate(rows, total);
                ref.upload(download(fusedGpu, fusedOp.x()), rx);
                ref.upload(gemm, ry);
                Tensor rv = ref.allocate(rows, n * 64);
                ref.sgmvShrinkGroup(rx, group.ref(), seg, rv);
                ref.sgmvExpandGroup(rv, group.ref(), seg, ry, cols);
                float[] want = new float[rows * total];
                ref.download(ry, want);
                float[] addedFused = GpuChecks.added(fused, gemm);
                float[] addedTwo = GpuChecks.added(twoLaunches, gemm);
                float[] addedRef = GpuChecks.added(want, gemm);
                assertClose("fused decode " + c.name() + " vs reference (all of y)", fused, want, TOL);
                assertClose("fused decode " + c.name() + " vs reference (added part)", addedFused, addedRef, 2 * TOL);
                assertClose("fused decode " + c.name() + " vs two launches (added part)", addedFused, addedTwo, 2 * TOL);
                for (int i = 0; i < seg.count(); i++) {
                    if (segSlots[i] < 0) {
                        for (int col = 0; col < total; col++) {
                            int at = i * total + col;
                            if (Float.floatToRawIntBits(fused[at]) != Float.floatToRawIntBits(gemm[at])) {
                                throw new AssertionError(c.name() + ": row " + i + " has no adapter but y[" + col + "] = "
                                        + fused[at] + ", the GEMM gave " + gemm[at]);
                            }
                        }
                    }
                }
                System.out.println("CHECK sgmv-group fused decode " + c.name() + (wideWanted ? " (clusters of 8)" : "")
                        + ": runs and 3 graph replays bit-identical, rows without adapter untouched ok");
                group.free();
                twoGroup.free();
                fusedOp.free();
                twoOp.free();
            }
        }
    }

    /** x, v, y and the weight w of one matmulLora on {@code gpu}, x uploaded; what a test runs on two backends. */
    record OnDevice(CudaBackend gpu, Tensor x, Tensor v, Tensor y, Tensor w) {
        OnDevice(CudaBackend gpu, int rows, int in, int vCols, int total, TensorData w, float[] x) {
            this(gpu, gpu.allocate(rows, in), gpu.allocate(rows, vCols), gpu.allocate(rows, total), gpu.loadWeight(w));
            gpu.upload(x, this.x);
        }

        void matmulLora(LoadedGroup group, Segments seg, int[] cols) {
            gpu.matmulLora(x, w, null, y, group.gpu(), seg, v, cols);
        }

        void free() {
            for (Tensor t : new Tensor[] {x, v, y, w}) {
                gpu.free(t);
            }
        }
    }

    /**
     * {@link CudaBackend#matmulLora} with the shrink on the side stream (overlapping the GEMM) equals the
     * same op on one stream bit for bit, eagerly and replayed from a CUDA graph: q|k|v and o at decode (the
     * fused kernel off, so that the two-launch path runs) and on a prefill chunk.
     */
    @Test
    void matmulLoraOverlapEqualsOneStream() {
        SplittableRandom rng = new SplittableRandom(6000);
        int in = 4096;
        // The fused kernel off on both, so that the two-launch path runs; the shrink on one stream or overlapped.
        try (CudaBackend oneStreamGpu = GpuChecks.open(o -> o.fusedLora(false).loraOverlap(false));
             CudaBackend overlapGpu = GpuChecks.open(o -> o.fusedLora(false).loraOverlap(true))) {
            for (int[] outs : new int[][] {QKV_OUTS, {4096}}) {
                for (int rows : new int[] {32, 300}) {
                    int n = outs.length;
                    int total = Arrays.stream(outs).sum();
                    int slots = 32;
                    int[][] ranks = mixedRanks(n, slots, rng);
                    long groupSeed = rng.nextLong();
                    LoadedGroup oneGroup = loadGroup(oneStreamGpu, new SplittableRandom(groupSeed), in, outs, ranks);
                    LoadedGroup group = loadGroup(overlapGpu, new SplittableRandom(groupSeed), in, outs, ranks);
                    Segments seg;
                    if (rows == 32) {
                        seg = segments(fill(32, 1), iota(32));
                    } else {
                        // Segments of 1 to 40 rows over the slots, the first without an adapter.
                        List<Integer> l = new ArrayList<>();
                        List<Integer> ss = new ArrayList<>();
                        int left = rows;
                        for (int s = -1; left > 0; s++) {
                            int len = Math.min(left, 1 + rng.nextInt(40));
                            l.add(len);
                            ss.add(s < slots ? s : -1);
                            left -= len;
                        }
                        seg = segments(l.stream().mapToInt(Integer::intValue).toArray(),
                                ss.stream().mapToInt(Integer::intValue).toArray());
                    }
                    int[] cols = columns(outs);
                    TensorData wData = TensorData.of("w", DType.BF16, total, in, random(rng, total * in, 0.02));
                    float[] xData = random(rng, rows * in, 1);
                    OnDevice one = new OnDevice(oneStreamGpu, rows, in, n * 64, total, wData, xData);
                    OnDevice overlapped = new OnDevice(overlapGpu, rows, in, n * 64, total, wData, xData);
                    float[] poison = new float[rows * n * 64];
                    Arrays.fill(poison, Float.NaN);
                    Runnable op = () -> overlapped.matmulLora(group, seg, cols);
                    oneStreamGpu.upload(poison, one.v());
                    one.matmulLora(oneGroup, seg, cols);
                    float[] oneStream = download(oneStreamGpu, one.y());
                    overlapGpu.upload(poison, overlapped.v());
                    op.run();
                    String what = (n == 3 ? "q|k|v" : "o") + " rows " + rows;
                    assertBitIdentical("matmulLora overlapped vs one stream, " + what, download(overlapGpu, overlapped.y()),
                            oneStream);
                    try (CudaBackend.CudaGraph graph = overlapGpu.capture(op)) {
                        for (int replay = 0; replay < 3; replay++) {
                            overlapGpu.upload(poison, overlapped.v());
                            graph.launch();
                            assertBitIdentical("matmulLora graph replay " + replay + ", " + what,
                                    download(overlapGpu, overlapped.y()), oneStream);
                        }
                    }
                    System.out.println("CHECK sgmv-group matmulLora overlap " + what + ": equals one stream bit for bit,"
                            + " eager and 3 graph replays ok");
                    group.free();
                    oneGroup.free();
                    one.free();
                    overlapped.free();
                }
            }
        }
    }
}
