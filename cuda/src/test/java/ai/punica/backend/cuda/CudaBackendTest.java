package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.BackendProvider;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.ServiceLoader;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Every operation of {@link CudaBackend} against {@link ReferenceBackend} on seeded random data (never
 * zeros), at many shapes. Inputs are rounded to bf16 first, so both backends see the same numbers; the
 * tolerance on ‖gpu − ref‖ / ‖ref‖ is 1e-2 (bf16 storage of outputs and intermediates, float32
 * accumulation), exact where no arithmetic happens. Each check prints one "CHECK" line for the
 * device-run summary.
 */
@Tag("gpu")
class CudaBackendTest extends GpuBackendTest {
    static final double TOL = 1e-2;

    // ---- helpers ----------------------------------------------------------------------------------

    /** The same activation on both backends. */
    record Pair(Tensor g, Tensor r, int rows, int cols) {
        float[] gpuValues() {
            float[] out = new float[rows * cols];
            gpu.download(g, out);
            return out;
        }

        float[] refValues() {
            float[] out = new float[rows * cols];
            ref.download(r, out);
            return out;
        }
    }

    static Pair activation(int rows, int cols, float[] values) {
        Tensor g = gpu.allocate(rows, cols);
        Tensor r = ref.allocate(rows, cols);
        gpu.upload(values, g);
        ref.upload(values, r);
        return new Pair(g, r, rows, cols);
    }

    static Pair activation(int rows, int cols) {
        float[] poison = new float[rows * cols];
        java.util.Arrays.fill(poison, Float.NaN);
        return activation(rows, cols, poison);
    }

    static Pair weight(String name, int rows, int cols, float[] values) {
        TensorData w = TensorData.of(name, DType.BF16, rows, cols, values);
        return new Pair(gpu.loadWeight(w), ref.loadWeight(w), rows, cols);
    }

    static void free(Pair... pairs) {
        for (Pair p : pairs) {
            gpu.free(p.g);
            ref.free(p.r);
        }
    }

    static void assertClose(String what, float[] got, float[] want, double tol) {
        double err = relativeError(got, want);
        System.out.printf("CHECK %-60s relErr %.2e (tol %.0e) %s%n", what, err, tol, err <= tol ? "ok" : "FAIL");
        assertThat(err).as(what + ": ‖gpu − ref‖/‖ref‖").isLessThanOrEqualTo(tol);
    }

    static void assertClose(String what, Pair p, double tol) {
        assertClose(what, p.gpuValues(), p.refValues(), tol);
    }

    // ---- memory and conversions -------------------------------------------------------------------

    @Test
    void uploadDownloadRoundTripIsExactForBf16Values() {
        SplittableRandom rng = new SplittableRandom(1);
        for (int[] shape : new int[][] {{1, 1}, {3, 7}, {129, 4097}, {2048, 4096}}) {
            float[] v = random(rng, shape[0] * shape[1], 3);
            Tensor t = gpu.allocate(shape[0], shape[1]);
            gpu.upload(v, t);
            float[] back = new float[v.length];
            gpu.download(t, back);
            assertClose("round trip " + shape[0] + "x" + shape[1], back, v, 0);
            gpu.free(t);
        }
    }

    @Test
    void loadWeightConvertsF32AndF16ToBf16WithRoundToNearestEven() {
        SplittableRandom rng = new SplittableRandom(2);
        int rows = 37;
        int cols = 1001;
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) rng.nextDouble(-4, 4);
        }
        for (DType type : DType.values()) {
            TensorData w = TensorData.of("w", type, rows, cols, v);
            float[] stored = w.toFloatArray();
            float[] want = new float[v.length];
            for (int i = 0; i < v.length; i++) {
                want[i] = DType.bf16ToFloat(DType.floatToBf16(stored[i]));
            }
            Tensor t = gpu.loadWeight(w);
            float[] got = new float[v.length];
            gpu.download(t, got);
            assertClose("loadWeight " + type, got, want, 0);
            gpu.free(t);
        }
        TensorData vector = TensorData.of("bias", DType.F32, 1, 77, random(rng, 77, 1));
        Tensor t = gpu.loadWeight(new TensorData("bias", DType.F32, new long[] {77}, vector.data()));
        assertThat(t.rows()).isEqualTo(1);
        assertThat(t.cols()).isEqualTo(77);
        gpu.free(t);
    }

    @Test
    void concatRowsStacksPartsInOrder() {
        SplittableRandom rng = new SplittableRandom(3);
        float[] a = random(rng, 5 * 64, 1);
        float[] b = random(rng, 3 * 64, 1);
        Tensor t = gpu.concatRows("ab", List.of(TensorData.of("a", DType.BF16, 5, 64, a), TensorData.of("b", DType.F32, 3, 64, b)));
        assertThat(t.rows()).isEqualTo(8);
        float[] got = new float[8 * 64];
        gpu.download(t, got);
        float[] want = new float[8 * 64];
        System.arraycopy(a, 0, want, 0, a.length);
        System.arraycopy(b, 0, want, a.length, b.length);
        assertClose("concatRows", got, want, 0);
        gpu.free(t);
    }

    // ---- dense operations -------------------------------------------------------------------------

    @Test
    void embeddingAndGatherRowsMatchReference() {
        SplittableRandom rng = new SplittableRandom(4);
        for (int hidden : new int[] {100, 4096}) {
            int vocab = 1000;
            Pair table = weight("embed", vocab, hidden, random(rng, vocab * hidden, 1));
            int[] ids = rng.ints(67, 0, vocab).toArray();
            Pair out = activation(ids.length, hidden);
            gpu.embedding(table.g, ids, out.g);
            ref.embedding(table.r, ids, out.r);
            assertClose("embedding hidden " + hidden, out, 0);

            int[] rows = {66, 0, 5, 5, 31};
            Pair gathered = activation(rows.length, hidden);
            gpu.gatherRows(out.g, rows, gathered.g);
            ref.gatherRows(out.r, rows, gathered.r);
            assertClose("gatherRows hidden " + hidden, gathered, 0);
            free(table, out, gathered);
        }
    }

    @Test
    void rmsNormMatchesReference() {
        SplittableRandom rng = new SplittableRandom(5);
        for (int[] shape : new int[][] {{1, 64}, {33, 100}, {7, 4096}, {300, 5120}, {2, 8192}}) {
            int rows = shape[0];
            int cols = shape[1];
            Pair x = activation(rows, cols, random(rng, rows * cols, 2));
            Pair w = weight("norm", 1, cols, random(rng, cols, 1.5));
            Pair out = activation(rows, cols);
            gpu.rmsNorm(x.g, w.g, 1e-5f, out.g);
            ref.rmsNorm(x.r, w.r, 1e-5f, out.r);
            assertClose("rmsNorm " + rows + "x" + cols, out, TOL);
            free(x, w, out);
        }
    }

    @Test
    void addAndSwigluMatchReference() {
        SplittableRandom rng = new SplittableRandom(6);
        for (int[] shape : new int[][] {{1, 8}, {5, 33}, {64, 4096}}) {
            int rows = shape[0];
            int cols = shape[1];
            Pair a = activation(rows, cols, random(rng, rows * cols, 2));
            Pair b = activation(rows, cols, random(rng, rows * cols, 2));
            Pair out = activation(rows, cols);
            gpu.add(a.g, b.g, out.g);
            ref.add(a.r, b.r, out.r);
            assertClose("add " + rows + "x" + cols, out, TOL);
            gpu.add(a.g, b.g, a.g);
            ref.add(a.r, b.r, a.r);
            assertClose("add in place " + rows + "x" + cols, a, TOL);

            Pair gu = activation(rows, 2 * cols, random(rng, rows * 2 * cols, 4));
            Pair act = activation(rows, cols);
            gpu.swiglu(gu.g, act.g);
            ref.swiglu(gu.r, act.r);
            assertClose("swiglu " + rows + "x" + cols, act, TOL);
            free(a, b, out, gu, act);
        }
    }

    @Test
    void matmulMatchesReference() {
        SplittableRandom rng = new SplittableRandom(7);
        for (int[] s : new int[][] {{1, 4096, 4096}, {7, 100, 300}, {64, 512, 1000}, {300, 256, 128}, {3, 4096, 14336}}) {
            int rows = s[0];
            int in = s[1];
            int out = s[2];
            Pair x = activation(rows, in, random(rng, rows * in, 1));
            Pair w = weight("w", out, in, random(rng, out * in, 0.05));
            Pair bias = weight("b", 1, out, random(rng, out, 0.5));
            Pair y = activation(rows, out);
            gpu.matmul(x.g, w.g, null, y.g);
            ref.matmul(x.r, w.r, null, y.r);
            assertClose("matmul " + rows + "x" + in + " · " + out + "x" + in + "ᵀ", y, TOL);
            gpu.matmul(x.g, w.g, bias.g, y.g);
            ref.matmul(x.r, w.r, bias.r, y.r);
            assertClose("matmul+bias " + rows + "x" + in + " · " + out + "x" + in + "ᵀ", y, TOL);
            free(x, w, bias, y);
        }
    }

    @Test
    void ropeMatchesReferenceAtLargePositions() {
        SplittableRandom rng = new SplittableRandom(8);
        for (int[] s : new int[][] {{32, 8, 128}, {4, 2, 64}, {14, 2, 64}}) {
            int heads = s[0];
            int kvHeads = s[1];
            int hd = s[2];
            float[] invFreq = new float[hd / 2];
            for (int i = 0; i < invFreq.length; i++) {
                invFreq[i] = (float) (1.0 / Math.pow(500000.0, 2.0 * i / hd));
            }
            for (float factor : new float[] {1f, 0.8f}) {
                RopeTable table = new RopeTable(invFreq, factor);
                int rows = 19;
                int cols = (heads + 2 * kvHeads) * hd;
                Pair x = activation(rows, cols, random(rng, rows * cols, 2));
                int[] positions = rng.ints(rows, 0, 100_000).toArray();
                positions[0] = 0;
                gpu.rope(x.g, positions, table, heads + kvHeads, hd);
                ref.rope(x.r, positions, table, heads + kvHeads, hd);
                assertClose("rope " + heads + "+" + kvHeads + " heads of " + hd + " factor " + factor, x, TOL);
                free(x);
            }
        }
    }

    // ---- paged attention --------------------------------------------------------------------------

    /**
     * Sequences with the given cached lengths and query rows; pages handed out shuffled. Keys and values
     * of every token are appended through appendKv from one random "history" QKV tensor.
     */
    void checkAttention(String what, int[] contextLens, int[] queryCounts, int heads, int kvHeads, int hd, int window,
                        long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int pageSize = 16;
        int seqs = contextLens.length;
        int totalPages = 0;
        for (int len : contextLens) {
            totalPages += (len + pageSize - 1) / pageSize;
        }
        List<Integer> pagePool = new ArrayList<>();
        for (int p = 0; p < totalPages + 3; p++) {
            pagePool.add(p);
        }
        Collections.shuffle(pagePool, new java.util.Random(seed));
        int[] pageTableStarts = new int[seqs + 1];
        int[] pageTables = new int[totalPages];
        int[] queryStarts = new int[seqs + 1];
        int next = 0;
        for (int s = 0; s < seqs; s++) {
            pageTableStarts[s] = next;
            for (int i = 0; i < (contextLens[s] + pageSize - 1) / pageSize; i++) {
                pageTables[next] = pagePool.get(next);
                next++;
            }
            queryStarts[s + 1] = queryStarts[s] + queryCounts[s];
        }
        pageTableStarts[seqs] = next;
        int rows = queryStarts[seqs];
        int qCols = heads * hd;
        int kvCols = kvHeads * hd;
        int cols = qCols + 2 * kvCols;
        AttentionBatch batch = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables, new int[rows], pageSize);

        int layers = 2;
        int layer = 1;
        KvStorage gKv = gpu.allocateKv(layers, totalPages + 3, pageSize, kvHeads, hd);
        KvStorage rKv = ref.allocateKv(layers, totalPages + 3, pageSize, kvHeads, hd);
        for (int s = 0; s < seqs; s++) {
            int len = contextLens[s];
            Pair hist = activation(len, cols, random(rng, len * cols, 1.5));
            int[] slots = new int[len];
            for (int t = 0; t < len; t++) {
                slots[t] = batch.slotOf(s, t);
            }
            gpu.appendKv(gKv, layer, hist.g, qCols, qCols + kvCols, slots);
            ref.appendKv(rKv, layer, hist.r, qCols, qCols + kvCols, slots);
            free(hist);
        }
        Pair qkv = activation(rows, cols, random(rng, rows * cols, 1.5));
        Pair out = activation(rows, qCols);
        AttentionShape shape = new AttentionShape(heads, kvHeads, hd, (float) (1 / Math.sqrt(hd)), window);
        gpu.attention(qkv.g, gKv, layer, batch, shape, out.g);
        ref.attention(qkv.r, rKv, layer, batch, shape, out.r);
        assertClose("attention " + what, out, TOL);
        free(qkv, out);
    }

    @Test
    void decodeAttentionMatchesReferenceWithSplitsAndGqa() {
        SplittableRandom rng = new SplittableRandom(9);
        int[] lens = rng.ints(16, 1, 3000).toArray();
        lens[0] = 1;
        lens[1] = 2999;
        int[] ones = new int[16];
        java.util.Arrays.fill(ones, 1);
        checkAttention("decode 16 seqs ≤3000 tokens, 32/8 heads of 128", lens, ones, 32, 8, 128, 0, 10);
        checkAttention("decode 1 seq 4000 tokens, 32/8 heads of 128", new int[] {4000}, new int[] {1}, 32, 8, 128, 0, 11);
        checkAttention("decode 3 seqs, 28/4 heads of 64", new int[] {700, 33, 129}, new int[] {1, 1, 1}, 28, 4, 64, 0, 12);
        checkAttention("decode MHA 8/8 heads of 256", new int[] {300, 17}, new int[] {1, 1}, 8, 8, 256, 0, 13);
    }

    @Test
    void prefillAndMixedAttentionMatchReference() {
        checkAttention("prefill 1 seq 300 rows, 32/8 heads of 128", new int[] {300}, new int[] {300}, 32, 8, 128, 0, 20);
        checkAttention("mixed: prefill chunk after cache + decodes", new int[] {500, 40, 1000, 7},
                new int[] {200, 1, 1, 7}, 16, 4, 128, 0, 21);
        checkAttention("sliding window 64, mixed", new int[] {400, 90}, new int[] {100, 1}, 8, 2, 64, 64, 22);
    }

    // ---- SGMV -------------------------------------------------------------------------------------

    /**
     * Shrink then expand for segments of {@code segLens} rows using {@code segSlots}; slots hold adapters
     * of {@code slotRanks} (0: the slot does not adapt this projection). Checks the shrink output where it
     * is defined and all of y, of which the rows without an adapter must be untouched.
     */
    void checkSgmv(String what, int in, int out, int yCol, int yCols, int[] segLens, int[] segSlots, int[] slotRanks,
                   long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int slots = slotRanks.length;
        LoraWeights gW = LoraWeights.empty(slots);
        LoraWeights rW = LoraWeights.empty(slots);
        List<Pair> owned = new ArrayList<>();
        int maxRank = 1;
        for (int s = 0; s < slots; s++) {
            int rank = slotRanks[s];
            if (rank == 0) {
                continue;
            }
            Pair a = weight("A" + s, rank, in, random(rng, rank * in, 0.05));
            Pair b = weight("B" + s, out, rank, random(rng, out * rank, 0.1));
            owned.add(a);
            owned.add(b);
            gW.a()[s] = a.g;
            gW.b()[s] = b.g;
            rW.a()[s] = a.r;
            rW.b()[s] = b.r;
            gW.rank()[s] = rW.rank()[s] = rank;
            gW.scale()[s] = rW.scale()[s] = (float) (16.0 / rank);
            maxRank = Math.max(maxRank, rank);
        }
        int[] starts = new int[segLens.length + 1];
        for (int i = 0; i < segLens.length; i++) {
            starts[i + 1] = starts[i] + segLens[i];
        }
        int rows = starts[segLens.length];
        Segments segments = new Segments(starts, segSlots);
        Pair x = activation(rows, in, random(rng, rows * in, 1));
        Pair v = activation(rows, maxRank);
        Pair y = activation(rows, yCols, random(rng, rows * yCols, 0.5));
        gpu.sgmvShrink(x.g, gW, segments, v.g);
        ref.sgmvShrink(x.r, rW, segments, v.r);
        float[] gv = v.gpuValues();
        float[] rv = v.refValues();
        List<Float> gDefined = new ArrayList<>();
        List<Float> rDefined = new ArrayList<>();
        for (int i = 0; i < segLens.length; i++) {
            int slot = segSlots[i];
            if (slot < 0 || slotRanks[slot] == 0) {
                continue;
            }
            for (int r = starts[i]; r < starts[i + 1]; r++) {
                for (int k = 0; k < slotRanks[slot]; k++) {
                    gDefined.add(gv[r * maxRank + k]);
                    rDefined.add(rv[r * maxRank + k]);
                }
            }
        }
        assertClose("sgmvShrink " + what, toArray(gDefined), toArray(rDefined), TOL);
        // Both expand from the same (GPU-rounded) v, so the expand check sees only the expand kernel's error.
        ref.upload(gv, v.r);
        float[] y0 = y.gpuValues();
        gpu.sgmvExpand(v.g, gW, segments, y.g, yCol);
        ref.sgmvExpand(v.r, rW, segments, y.r, yCol);
        float[] gy = y.gpuValues();
        float[] ry = y.refValues();
        assertClose("sgmvExpand " + what + " (all of y)", gy, ry, TOL);
        float[] gDelta = new float[gy.length];
        float[] rDelta = new float[ry.length];
        for (int i = 0; i < gy.length; i++) {
            gDelta[i] = gy[i] - y0[i];
            rDelta[i] = ry[i] - y0[i];
        }
        assertClose("sgmvExpand " + what + " (added part)", gDelta, rDelta, 2 * TOL);
        for (int i = 0; i < segLens.length; i++) {
            if (segSlots[i] < 0 || slotRanks[segSlots[i]] == 0) {
                for (int r = starts[i]; r < starts[i + 1]; r++) {
                    for (int c = 0; c < yCols; c++) {
                        assertThat(gy[r * yCols + c]).as("untouched y[%d, %d]", r, c).isEqualTo(y0[r * yCols + c]);
                    }
                }
            }
        }
        free(x, v, y);
        for (Pair p : owned) {
            free(p);
        }
    }

    static float[] toArray(List<Float> values) {
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = values.get(i);
        }
        return out;
    }

    @Test
    void sgmvDecodeBatchWithDistinctAdaptersMatchesReference() {
        for (int batch : new int[] {1, 7, 64}) {
            int[] lens = new int[batch];
            int[] slots = new int[batch];
            int[] ranks = new int[batch];
            int[] choices = {4, 8, 16, 32, 64};
            for (int i = 0; i < batch; i++) {
                lens[i] = 1;
                slots[i] = i;
                ranks[i] = choices[i % choices.length];
            }
            checkSgmv("decode batch " + batch + " distinct adapters ranks 4-64, 4096→4096", 4096, 4096, 0, 4096, lens,
                    slots, ranks, 30 + batch);
        }
    }

    @Test
    void sgmvPrefillSegmentsMatchReference() {
        checkSgmv("prefill segments 1/7/300/64/129 ranks 16/64/8, 4096→1024 at col 4096", 4096, 1024, 4096, 6144,
                new int[] {1, 7, 300, 64, 129}, new int[] {0, 1, 2, 0, 1}, new int[] {16, 64, 8}, 40);
        checkSgmv("no-adapter and absent-slot segments, odd sizes 1003→999, ranks 5/12", 1003, 999, 3, 1010,
                new int[] {9, 40, 3, 17, 250}, new int[] {-1, 0, 2, 1, 3}, new int[] {5, 12, 0, 12}, 41);
        checkSgmv("rank 128 and 256, 14336→4096 (down_proj)", 14336, 4096, 0, 4096,
                new int[] {3, 20}, new int[] {0, 1}, new int[] {128, 256}, 42);
    }

    @Test
    void capturedGraphReplaysTheSameResultAsDirectExecution() {
        SplittableRandom rng = new SplittableRandom(60);
        int rows = 12;
        int hidden = 512;
        Tensor x = gpu.allocate(rows, hidden);
        Tensor h = gpu.allocate(rows, hidden);
        Tensor y = gpu.allocate(rows, hidden);
        Tensor v = gpu.allocate(rows, 16);
        gpu.upload(random(rng, rows * hidden, 1), x);
        Tensor norm = gpu.loadWeight(TensorData.of("n", DType.BF16, 1, hidden, random(rng, hidden, 1)));
        Tensor w = gpu.loadWeight(TensorData.of("w", DType.BF16, hidden, hidden, random(rng, hidden * hidden, 0.05)));
        LoraWeights lw = LoraWeights.empty(2);
        for (int s = 0; s < 2; s++) {
            lw.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, 16, hidden, random(rng, 16 * hidden, 0.05)));
            lw.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, hidden, 16, random(rng, 16 * hidden, 0.1)));
            lw.rank()[s] = 16;
            lw.scale()[s] = 2f;
        }
        Segments seg = new Segments(new int[] {0, 5, 12}, new int[] {1, 0});
        Runnable step = () -> {
            gpu.rmsNorm(x, norm, 1e-6f, h);
            gpu.matmul(h, w, null, y);
            gpu.sgmvShrink(h, lw, seg, v);
            gpu.sgmvExpand(v, lw, seg, y, 0);
        };
        step.run();
        float[] direct = new float[rows * hidden];
        gpu.download(y, direct);
        gpu.upload(random(rng, rows * hidden, 1), y);
        try (CudaBackend.CudaGraph graph = gpu.capture(step)) {
            graph.launch();
            graph.launch();
        }
        float[] replayed = new float[rows * hidden];
        gpu.download(y, replayed);
        assertClose("graph replay of norm+matmul+sgmv", replayed, direct, 0);
        for (Tensor t : new Tensor[] {x, h, y, v, norm, w, lw.a()[0], lw.a()[1], lw.b()[0], lw.b()[1]}) {
            gpu.free(t);
        }
    }

    // ---- wiring -----------------------------------------------------------------------------------

    @Test
    void providerIsRegisteredAsAServiceAndPreferredOverCpu() {
        List<BackendProvider> found = new ArrayList<>();
        ServiceLoader.load(BackendProvider.class).forEach(found::add);
        assertThat(found).anySatisfy(p -> {
            assertThat(p.name()).isEqualTo("cuda");
            assertThat(p.available()).isTrue();
            assertThat(p.priority()).isGreaterThan(10);
            try (Backend b = p.create()) {
                assertThat(b.name()).isEqualTo("cuda");
            }
        });
    }

    @Test
    void nvrtcCompiledKernelsMatchTheFatbinOnes() {
        CudaBackend jit;
        try {
            jit = new CudaBackend(CudaOptions.fromSystemProperties().toBuilder().nvrtc(true).build());
        } catch (CudaException e) {
            System.out.println("CHECK nvrtc unavailable: " + e.getMessage().lines().findFirst().orElse(""));
            assumeTrue(false, "NVRTC unavailable: " + e.getMessage());
            return;
        }
        try (jit) {
            assertThat(jit.kernelOrigins().values()).allMatch(o -> o.startsWith("nvrtc"));
            SplittableRandom rng = new SplittableRandom(50);
            float[] xv = random(rng, 5 * 4096, 2);
            float[] wv = random(rng, 4096, 1);
            Tensor x = jit.allocate(5, 4096);
            Tensor out = jit.allocate(5, 4096);
            jit.upload(xv, x);
            Tensor w = jit.loadWeight(TensorData.of("w", DType.BF16, 1, 4096, wv));
            jit.rmsNorm(x, w, 1e-6f, out);
            float[] got = new float[5 * 4096];
            jit.download(out, got);
            Pair px = activation(5, 4096, xv);
            Pair pw = weight("w", 1, 4096, wv);
            Pair po = activation(5, 4096);
            ref.rmsNorm(px.r, pw.r, 1e-6f, po.r);
            assertClose("rmsNorm with NVRTC kernels " + jit.kernelOrigins(), got, po.refValues(), TOL);
            free(px, pw, po);
        }
    }
}
