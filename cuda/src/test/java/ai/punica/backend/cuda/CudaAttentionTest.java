package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.Tensor;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Paged attention of {@link CudaBackend} against {@link ReferenceBackend}, with the decode kernel (one query
 * row per sequence) in front: seeded random keys, values and queries rounded to bf16 (never zeros), pages
 * handed out from a shuffled pool, the output poisoned with NaN before every run. Each check is on every
 * row: ‖gpu − ref‖ / ‖ref‖ of the row ≤ 1e-2 (bf16 cache and output, float32 softmax and accumulation);
 * the CHECK line shows the largest row error and the flash-decoding splits the launch used.
 */
@Tag("gpu")
class CudaAttentionTest extends GpuBackendTest {
    static final double TOL = 1e-2;
    static final int[] CONTEXTS = {1, 15, 16, 17, 100, 512, 3000, 8192};

    /**
     * One attention call: per sequence its context length and query rows; {@code qRange} is the range of
     * the query values (larger: peakier softmax); the cache has {@code layers} layers and the call reads
     * the last one.
     */
    record Problem(int[] contextLens, int[] queryCounts, int heads, int kvHeads, int headDim, int window, int pageSize,
                   double qRange, int layers) {

        static Problem decode(int[] contextLens, int heads, int kvHeads, int headDim, int window) {
            int[] ones = new int[contextLens.length];
            Arrays.fill(ones, 1);
            return new Problem(contextLens, ones, heads, kvHeads, headDim, window, 16, 1.5, 1);
        }

        Problem withPageSize(int size) {
            return new Problem(contextLens, queryCounts, heads, kvHeads, headDim, window, size, qRange, layers);
        }

        Problem withQueryRange(double range) {
            return new Problem(contextLens, queryCounts, heads, kvHeads, headDim, window, pageSize, range, layers);
        }

        Problem withLayers(int count) {
            return new Problem(contextLens, queryCounts, heads, kvHeads, headDim, window, pageSize, qRange, count);
        }

        int rows() {
            return Arrays.stream(queryCounts).sum();
        }

        String describe() {
            IntSummary c = IntSummary.of(contextLens);
            return "b=" + rows() + " ctx=" + (c.min == c.max ? String.valueOf(c.min) : c.min + ".." + c.max)
                    + " heads=" + heads + "/" + kvHeads + " hd=" + headDim
                    + (window > 0 ? " window=" + window : "") + (pageSize != 16 ? " page=" + pageSize : "")
                    + (qRange != 1.5 ? " q=" + qRange : "") + (layers > 1 ? " layer=" + (layers - 1) : "");
        }
    }

    record IntSummary(int min, int max) {
        static IntSummary of(int[] v) {
            return new IntSummary(Arrays.stream(v).min().orElse(0), Arrays.stream(v).max().orElse(0));
        }
    }

    /**
     * Runs {@code p} on both backends (the GPU's decode kernel unless {@code decodeKernel} is false; steps that
     * are not decode steps on the CUDA-core kernel) and checks every row; returns the largest row error.
     */
    static double check(String kind, Problem p, long seed, boolean decodeKernel) {
        return check(kind, p, seed, o -> o.decodeAttention(decodeKernel).tensorCoreAttention(false), null);
    }

    /**
     * Runs {@code p} on both backends, the GPU one with the switches {@code options} changes (a backend of its own,
     * opened once per option set: {@link GpuBackendTest#gpuWith}), and checks every row; when {@code kernelPrefix}
     * is not null, also that the GPU launched a kernel of that name. Returns the largest row error.
     */
    static double check(String kind, Problem p, long seed, UnaryOperator<CudaOptions.Builder> options,
                        String kernelPrefix) {
        return check(kind, p, seed, gpuWith(options), kernelPrefix);
    }

    /** {@link #check(String, Problem, long, UnaryOperator, String)} on {@code gpu}, whose switches pick the kernel. */
    static double check(String kind, Problem p, long seed, CudaBackend gpu, String kernelPrefix) {
        return checked(kind, p, seed, gpu, kernelPrefix).worst();
    }

    /** What {@link #checked} found: the largest row error and the GPU's output rows. */
    record Checked(double worst, float[] got) {
    }

    /** {@link #check(String, Problem, long, CudaBackend, String)}, keeping the GPU's output. */
    static Checked checked(String kind, Problem p, long seed, CudaBackend gpu, String kernelPrefix) {
        SplittableRandom rng = new SplittableRandom(seed);
        int seqs = p.contextLens.length;
        int pageSize = p.pageSize;
        int needed = 0;
        for (int len : p.contextLens) {
            needed += (len + pageSize - 1) / pageSize;
        }
        // Pages from a shuffled pool a quarter larger than needed: tables are neither contiguous nor dense.
        int poolPages = needed + needed / 4 + 3;
        List<Integer> pool = new ArrayList<>();
        for (int i = 0; i < poolPages; i++) {
            pool.add(i);
        }
        Collections.shuffle(pool, new Random(seed));
        int[] pageTableStarts = new int[seqs + 1];
        int[] pageTables = new int[needed];
        int[] queryStarts = new int[seqs + 1];
        int next = 0;
        for (int s = 0; s < seqs; s++) {
            pageTableStarts[s] = next;
            for (int i = 0; i < (p.contextLens[s] + pageSize - 1) / pageSize; i++) {
                pageTables[next] = pool.get(next);
                next++;
            }
            queryStarts[s + 1] = queryStarts[s] + p.queryCounts[s];
        }
        pageTableStarts[seqs] = next;
        int rows = queryStarts[seqs];
        AttentionBatch batch = new AttentionBatch(queryStarts, p.contextLens, pageTableStarts, pageTables, new int[rows],
                pageSize);

        // Keys and values of every token, appended in chunks from random [n, K | V] activations.
        int kvCols = p.kvHeads * p.headDim;
        int layer = p.layers - 1;
        KvStorage gKv = gpu.allocateKv(p.layers, poolPages, pageSize, p.kvHeads, p.headDim);
        KvStorage rKv = ref.allocateKv(p.layers, poolPages, pageSize, p.kvHeads, p.headDim);
        for (int s = 0; s < seqs; s++) {
            for (int t0 = 0; t0 < p.contextLens[s]; t0 += 1024) {
                int n = Math.min(1024, p.contextLens[s] - t0);
                float[] kv = random(rng, n * 2 * kvCols, 1.5);
                int[] slots = new int[n];
                for (int t = 0; t < n; t++) {
                    slots[t] = batch.slotOf(s, t0 + t);
                }
                Tensor g = gpu.allocate(n, 2 * kvCols);
                Tensor r = ref.allocate(n, 2 * kvCols);
                gpu.upload(kv, g);
                ref.upload(kv, r);
                gpu.appendKv(gKv, layer, g, 0, kvCols, slots);
                ref.appendKv(rKv, layer, r, 0, kvCols, slots);
                gpu.free(g);
                ref.free(r);
            }
        }

        // qkv rows: queries, then keys and values that attention does not read.
        int qCols = p.heads * p.headDim;
        int cols = qCols + 2 * kvCols;
        float[] qkv = random(rng, rows * cols, p.qRange);
        Tensor gQkv = gpu.allocate(rows, cols);
        Tensor rQkv = ref.allocate(rows, cols);
        gpu.upload(qkv, gQkv);
        ref.upload(qkv, rQkv);
        float[] poison = new float[rows * qCols];
        Arrays.fill(poison, Float.NaN);
        Tensor gOut = gpu.allocate(rows, qCols);
        Tensor rOut = ref.allocate(rows, qCols);
        gpu.upload(poison, gOut);

        AttentionShape shape = new AttentionShape(p.heads, p.kvHeads, p.headDim, (float) (1 / Math.sqrt(p.headDim)),
                p.window);
        gpu.attention(gQkv, gKv, layer, batch, shape, gOut);
        String kernel = gpu.lastAttentionKernel();
        ref.attention(rQkv, rKv, layer, batch, shape, rOut);
        float[] got = new float[rows * qCols];
        float[] want = new float[rows * qCols];
        gpu.download(gOut, got);
        ref.download(rOut, want);
        gpu.free(gQkv);
        gpu.free(gOut);
        ref.free(rQkv);
        ref.free(rOut);

        double worst = 0;
        int worstRow = 0;
        for (int r = 0; r < rows; r++) {
            double e = GpuChecks.relativeError(got, want, r * qCols, qCols);
            if (!(e <= worst)) {
                worst = e;
                worstRow = r;
            }
        }
        String splits = kernel.startsWith("attention_decode") ? " splits=" + gpu.attentionDecodeSplits(rows, shape)
                : kernel.startsWith("attention_prefill_tc") ? " splits=" + gpu.attentionTensorCoreSplits(rows, seqs, shape)
                : "";
        String what = kind + " " + p.describe() + " [" + kernel + splits + "]";
        int unwritten = 0;
        for (float v : got) {
            if (Float.isNaN(v)) {
                unwritten++;
            }
        }
        System.out.printf("CHECK %s err %.2e (worst row %d at position %d, tol %.0e, NaN outputs %d) %s%n", what,
                worst, worstRow, positionOf(batch, worstRow), TOL, unwritten, worst <= TOL ? "ok" : "FAIL");
        if (kernelPrefix != null) {
            assertThat(kernel).as(what + ": kernel launched").startsWith(kernelPrefix);
        }
        assertThat(worst).as(what + ": ‖gpu − ref‖/‖ref‖ of row " + worstRow + " (" + unwritten + " NaN outputs)")
                .isLessThanOrEqualTo(TOL);
        return new Checked(worst, got);
    }

    /** Position of a query row of the batch (-1 when no sequence holds it). */
    static int positionOf(AttentionBatch batch, int row) {
        for (int s = 0; s < batch.numSequences(); s++) {
            if (row >= batch.queryStarts()[s] && row < batch.queryStarts()[s + 1]) {
                return batch.position(s, row);
            }
        }
        return -1;
    }

    /** {@code rows} contexts: every one of {@link #CONTEXTS} once (as far as rows go), then random picks, shuffled. */
    static int[] mixedContexts(int rows, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[] lens = new int[rows];
        for (int i = 0; i < rows; i++) {
            lens[i] = i < CONTEXTS.length ? CONTEXTS[i] : CONTEXTS[rng.nextInt(CONTEXTS.length)];
        }
        for (int i = rows - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int t = lens[i];
            lens[i] = lens[j];
            lens[j] = t;
        }
        return lens;
    }

    static int[] uniform(int rows, int len) {
        int[] lens = new int[rows];
        Arrays.fill(lens, len);
        return lens;
    }

    // ---- decode kernel ------------------------------------------------------------------------------

    @Test
    void decodeMatchesReferenceAtEveryContextLength() {
        long seed = 100;
        for (int len : CONTEXTS) {
            check("attention-decode", Problem.decode(uniform(3, len), 4, 4, 128, 0), seed++, true);
            check("attention-decode", Problem.decode(uniform(2, len), 8, 2, 128, 0), seed++, true);
        }
    }

    @Test
    void decodeMatchesReferenceForMixedBatchesOfMhaAndGqa() {
        // (heads, KV heads, head dim): MHA, groups of 4 and 8; head dims 64, 128 and the odd multiples 72, 96.
        int[][] shapes = {{4, 4, 128}, {2, 2, 64}, {3, 3, 72}, {8, 2, 128}, {4, 1, 96}, {16, 2, 128}, {8, 1, 64}};
        long seed = 200;
        for (int[] s : shapes) {
            for (int rows : new int[] {1, 5, 17, 32, 64}) {
                check("attention-decode", Problem.decode(mixedContexts(rows, seed), s[0], s[1], s[2], 0), seed++, true);
            }
        }
    }

    @Test
    void decodeMatchesReferenceWithSlidingWindow() {
        long seed = 300;
        check("attention-decode", Problem.decode(mixedContexts(12, seed), 4, 4, 128, 100), seed++, true);
        check("attention-decode", Problem.decode(mixedContexts(12, seed), 8, 2, 96, 1000), seed++, true);
        check("attention-decode", Problem.decode(new int[] {8192, 17, 4097, 1}, 8, 1, 64, 4096), seed++, true);
        check("attention-decode", Problem.decode(mixedContexts(9, seed), 16, 2, 128, 1), seed++, true);
    }

    @Test
    void decodeMatchesReferenceAtTheEdgesOfItsSupport() {
        long seed = 400;
        // Groups past 8 run in passes of 8 query heads (16: two full passes; 12: a full one and one of 4).
        check("attention-decode", Problem.decode(mixedContexts(8, seed), 16, 1, 128, 0), seed++, true);
        check("attention-decode", Problem.decode(mixedContexts(8, seed), 24, 2, 64, 0), seed++, true);
        // Groups of 2, 3 (in a pass of 4), 5 and 7 (in a pass of 8).
        for (int group : new int[] {2, 3, 5, 7}) {
            check("attention-decode", Problem.decode(mixedContexts(6, seed), 2 * group, 2, 128, 0), seed++, true);
        }
        // Head dims 8 (the smallest), 256 (the largest: 32 lanes per token) and 200 (25 of 32 lanes busy).
        check("attention-decode", Problem.decode(mixedContexts(6, seed), 4, 2, 8, 0), seed++, true);
        check("attention-decode", Problem.decode(mixedContexts(6, seed), 8, 8, 256, 0), seed++, true);
        check("attention-decode", Problem.decode(mixedContexts(6, seed), 8, 2, 200, 0), seed++, true);
        // Page sizes that are not a power of two, and single-token pages.
        check("attention-decode", Problem.decode(mixedContexts(8, seed), 4, 4, 128, 0).withPageSize(12), seed++, true);
        check("attention-decode", Problem.decode(new int[] {300, 1, 2, 77}, 8, 2, 64, 0).withPageSize(1), seed++, true);
        // A peaky softmax (queries up to ±12: scores spread over tens of units) and a layer other than the first.
        check("attention-decode", Problem.decode(mixedContexts(10, seed), 8, 2, 128, 0).withQueryRange(12), seed++, true);
        check("attention-decode", Problem.decode(mixedContexts(10, seed), 4, 4, 64, 0).withLayers(3), seed++, true);
    }

    @Test
    void decodeWithOneSplitWritesTheOutputDirectly() {
        // One block per SM as the target and at least as many blocks as SMs: no split, no merge kernel.
        try (CudaBackend oneBlock = GpuChecks.open(o -> o.decodeBlocksPerSm(1).tensorCoreAttention(false))) {
            Problem p = Problem.decode(mixedContexts(64, 500), 8, 8, 64, 0);
            assertThat(oneBlock.attentionDecodeSplits(64, new AttentionShape(8, 8, 64, 1, 0)))
                    .as("splits at 1 block per SM for 512 blocks").isEqualTo(1);
            check("attention-decode", p, 500, oneBlock, null);
        }
    }

    @Test
    void decodeMergesItsOwnSplitsBitForBitAsTheMergeKernel() {
        CudaBackend inKernel = gpuWith(o -> o.decodeAttention(true).tensorCoreAttention(false).decodeMerge(true));
        CudaBackend merged = gpuWith(o -> o.decodeAttention(true).tensorCoreAttention(false).decodeMerge(false));
        long seed = 700;
        // Llama-2 (MHA) and Llama-3 (groups of 8) shapes, passes of 8 heads, a window that empties splits.
        List<Problem> problems = List.of(Problem.decode(mixedContexts(32, seed), 32, 32, 128, 0),
                Problem.decode(mixedContexts(17, seed + 1), 32, 8, 128, 0),
                Problem.decode(mixedContexts(6, seed + 2), 16, 1, 128, 0),
                Problem.decode(new int[] {8192, 1, 17, 4097}, 8, 2, 64, 4096));
        for (Problem p : problems) {
            AttentionShape shape = new AttentionShape(p.heads(), p.kvHeads(), p.headDim(), 1, p.window());
            assertThat(inKernel.attentionDecodeSplits(p.rows(), shape)).as(p.describe() + ": splits").isGreaterThan(1);
            float[] first = checked("attention-decode-merge", p, seed, inKernel, "attention_decode").got();
            // The counters went back to zero: the same launch again merges again.
            float[] again = checked("attention-decode-merge", p, seed, inKernel, "attention_decode").got();
            float[] apart = checked("attention-decode-merge-kernel", p, seed, merged, "attention_decode").got();
            assertThat(again).as(p.describe() + ": a second launch").isEqualTo(first);
            assertThat(first).as(p.describe() + ": merged in the kernel against attention_merge").isEqualTo(apart);
            seed += 10;
        }
    }

    @Test
    void decodeSplitsDependOnShapesOnly() {
        AttentionShape llama2 = new AttentionShape(32, 32, 128, 1, 0);
        AttentionShape llama3 = new AttentionShape(32, 8, 128, 1, 0);
        for (int rows : new int[] {1, 8, 32, 64, 256}) {
            int s2 = gpu.attentionDecodeSplits(rows, llama2);
            int s3 = gpu.attentionDecodeSplits(rows, llama3);
            System.out.printf("CHECK attention-decode splits b=%d: llama2 %d, llama3 %d%n", rows, s2, s3);
            assertThat(s2).isBetween(1, 32);
            assertThat(s3).isBetween(s2, 32);
        }
    }

    // ---- general kernel (prefill and mixed steps, and decode steps routed to it) ---------------------

    @Test
    void generalKernelMatchesReferenceOnDecodeSteps() {
        long seed = 600;
        check("attention-general", Problem.decode(mixedContexts(17, seed), 8, 2, 128, 0), seed++, false);
        check("attention-general", Problem.decode(mixedContexts(5, seed), 3, 3, 72, 100), seed++, false);
    }

    @Test
    void generalKernelMatchesReferenceOnPrefillAndMixedSteps() {
        long seed = 700;
        // Sequences without query rows in the step sit between others (the kernel finds each row's sequence).
        Problem mixed = new Problem(new int[] {500, 40, 1000, 7, 3000, 16}, new int[] {0, 1, 37, 7, 0, 16}, 16, 4, 128,
                0, 16, 1.5, 1);
        check("attention-general", mixed, seed++, true);
        Problem prefill = new Problem(new int[] {300}, new int[] {300}, 8, 2, 96, 0, 16, 1.5, 2);
        check("attention-general", prefill, seed++, true);
        Problem window = new Problem(new int[] {400, 90, 8192}, new int[] {100, 1, 3}, 8, 2, 64, 64, 12, 1.5, 1);
        check("attention-general", window, seed++, true);
    }
}
