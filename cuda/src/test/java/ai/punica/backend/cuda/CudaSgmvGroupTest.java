package ai.punica.backend.cuda;

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
import ai.punica.backend.reference.ReferenceBackend;
import ai.punica.model.TensorData;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The grouped SGMV ops of {@link CudaBackend} (one launch for q|k|v or gate|up) against the
 * {@link ReferenceBackend}'s group ops and against the CUDA single ops, on seeded random bf16 data: decode
 * batches of 1 to 64 one-row segments with distinct slots (split-K shrink, one counter region per
 * projection), prefill segments up to 300 rows, ranks 4 to 64 mixed per projection and slot, slots absent
 * in some projections of the group or in all of them, a projection with no slot loaded at all, segments
 * without an adapter. Shapes: in 4096 → 4096|1024|1024 (GQA q|k|v) and 4096 → 11008|11008 (gate|up).
 *
 * <p>Each case runs 3 times on the same buffers (v poisoned with NaN each time): every run must match the
 * reference within ‖gpu − ref‖/‖ref‖ ≤ 1e-2 (bf16 outputs, fp32 accumulation), the runs must be
 * bit-identical, rows and columns a projection does not adapt must keep their bits in y, and the group
 * expand must equal the single expands bit for bit (same per-thread arithmetic); the group shrink may
 * split its inputs differently from the single shrinks, so it is compared with them within 1e-2.
 * Prints "CHECK sgmv-group ..." lines.
 */
@Tag("gpu")
class CudaSgmvGroupTest {
    static final double TOL = 1e-2;
    static final int RUNS = 3;
    static final int[] QKV_OUTS = {4096, 1024, 1024};
    static final int[] GATE_UP_OUTS = {11008, 11008};

    static CudaBackend gpu;
    static ReferenceBackend ref;

    @BeforeAll
    static void open() {
        gpu = GpuChecks.openOrSkip("sgmv-group");
        ref = new ReferenceBackend();
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
    }

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

        String what = c.name() + " [" + CudaBackend.sgmvTileCount(rows, slots) + " tiles]";
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
            float[] added = new float[y.length];
            float[] addedRef = new float[y.length];
            for (int i = 0; i < y.length; i++) {
                added[i] = y[i] - y0[i];
                addedRef[i] = yRef[i] - y0[i];
            }
            assertClose("group expand vs reference " + what + " run " + run + " (added part)", added, addedRef, 2 * TOL);
            assertThat(y).as("%s: group expand equals the single expands bit for bit", c.name()).containsExactly(ySingle);
            checkUntouched(c, starts, y, y0);
            if (run == 0) {
                firstV = definedV;
                firstY = y;
            } else {
                assertThat(definedV).as("%s: shrink run %d equals run 0 bit for bit", c.name(), run).containsExactly(firstV);
                assertThat(y).as("%s: expand run %d equals run 0 bit for bit", c.name(), run).containsExactly(firstY);
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
        for (int batch : new int[] {1, 2, 7, 32, 64}) {
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
                assertThat(download(gpu, y)).as("replay %d", replay).containsExactly(eager);
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
}
