package ai.punica.backend;

import static ai.punica.backend.BackendComparison.assertClose;
import static ai.punica.backend.BackendComparison.download;
import static ai.punica.backend.BackendComparison.maxAbs;
import static ai.punica.backend.BackendComparison.nans;
import static ai.punica.backend.BackendComparison.random;
import static ai.punica.backend.BackendComparison.upload;

import ai.punica.backend.BackendComparison.Variant;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Paged attention of the CPU backend against the reference on mixed batches: a chunked prefill (many
 * query rows over earlier context), a full prefill, long and length-1 decodes, with page tables that
 * are random permutations of the pages, page sizes 1/4/16, GQA ratios 1/2/4 and sliding windows.
 *
 * <p>Tolerance: float32 dot products and softmax (vector exp) against double: relative error
 * ‖cpu − ref‖₂/‖ref‖₂ ≤ 1e-5 and max abs error ≤ 1e-5 · max|ref| (observed at most 2e-7 relative, 3e-7 · max|ref| abs).
 */
class CpuAttentionTest {

    private static final double REL = 1e-5;
    private static final double ABS = 1e-5;

    /** Per sequence: tokens cached before this step, query rows this step. */
    private static final int[][] SEQUENCES = {{13, 37}, {69, 1}, {0, 1}, {0, 20}, {30, 1}, {4, 9}};

    static Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        BackendComparison.variants().forEach(variant -> {
            for (int pageSize : new int[] {1, 4, 16}) {
                for (int group : new int[] {1, 2, 4}) {
                    int window = group == 2 ? 7 : pageSize == 16 && group == 4 ? 24 : 0;
                    cases.add(Arguments.of(variant, pageSize, group, window, 32));
                }
            }
            cases.add(Arguments.of(variant, 4, 4, 0, 128));
            cases.add(Arguments.of(variant, 16, 2, 5, 20));
        });
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}, page size {1}, GQA {2}, window {3}, head dim {4}")
    @MethodSource("cases")
    void pagedAttentionMatchesReference(Variant variant, int pageSize, int group, int window, int headDim) {
        SplittableRandom random = new SplittableRandom(pageSize * 1000L + group * 100L + window + headDim);
        int kvHeads = 2;
        int heads = kvHeads * group;
        int qCols = heads * headDim;
        int kvCols = kvHeads * headDim;
        int qkvCols = qCols + 2 * kvCols;
        int layers = 2;
        int layer = 1;

        // Page tables: each sequence gets ceil(context / pageSize) pages drawn from a shuffled pool.
        int sequences = SEQUENCES.length;
        int[] contextLens = new int[sequences];
        int[] queryStarts = new int[sequences + 1];
        int[] pageTableStarts = new int[sequences];
        int totalPages = 0;
        for (int s = 0; s < sequences; s++) {
            contextLens[s] = SEQUENCES[s][0] + SEQUENCES[s][1];
            queryStarts[s + 1] = queryStarts[s] + SEQUENCES[s][1];
            pageTableStarts[s] = totalPages;
            totalPages += (contextLens[s] + pageSize - 1) / pageSize;
        }
        int numPages = totalPages + 5;
        int[] pool = shuffledPages(random, numPages);
        int[] pageTables = java.util.Arrays.copyOf(pool, totalPages);
        int rows = queryStarts[sequences];

        // Earlier context: one appendKv of every earlier token (its q part is never read).
        int history = 0;
        for (int[] seq : SEQUENCES) {
            history += seq[0];
        }
        int[] historySlots = new int[history];
        int[] stepSlots = new int[rows];
        int h = 0;
        for (int s = 0; s < sequences; s++) {
            for (int t = 0; t < contextLens[s]; t++) {
                int slot = pageTables[pageTableStarts[s] + t / pageSize] * pageSize + t % pageSize;
                if (t < SEQUENCES[s][0]) {
                    historySlots[h++] = slot;
                } else {
                    stepSlots[queryStarts[s] + t - SEQUENCES[s][0]] = slot;
                }
            }
        }
        float[] historyQkv = random(random, history * qkvCols, 1.5);
        float[] otherLayerQkv = random(random, rows * qkvCols, 1.5);
        float[] stepQkv = random(random, rows * qkvCols, 1.5);
        AttentionBatch batch = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables, stepSlots, pageSize);
        AttentionShape shape = new AttentionShape(heads, kvHeads, headDim, (float) (1 / Math.sqrt(headDim)), window);

        float[] want = run(new ReferenceBackend(), layers, layer, numPages, shape, batch, history, historySlots,
                historyQkv, otherLayerQkv, stepQkv, qkvCols);
        float[] got = run(variant.create(), layers, layer, numPages, shape, batch, history, historySlots,
                historyQkv, otherLayerQkv, stepQkv, qkvCols);
        assertClose("attention on " + variant, got, want, rows * qCols, REL, ABS * maxAbs(want, want.length));
    }

    /** Fills the cache (both layers), appends this step's keys and values, and returns attention's output. */
    private static float[] run(Backend backend, int layers, int layer, int numPages, AttentionShape shape,
                               AttentionBatch batch, int history, int[] historySlots, float[] historyQkv,
                               float[] otherLayerQkv, float[] stepQkv, int qkvCols) {
        try (backend) {
            int qCols = shape.qCols();
            int kvCols = shape.kvCols();
            KvStorage kv = backend.allocateKv(layers, numPages, batch.pageSize(), shape.numKvHeads(), shape.headDim());
            if (history > 0) {
                backend.appendKv(kv, layer, upload(backend, history, qkvCols, historyQkv), qCols, qCols + kvCols, historySlots);
            }
            int rows = batch.numRows();
            // The other layer gets different keys and values at the same slots: reading it would show.
            backend.appendKv(kv, 1 - layer, upload(backend, rows, qkvCols, otherLayerQkv), qCols, qCols + kvCols, batch.slotMapping());
            Tensor qkv = upload(backend, rows, qkvCols, stepQkv);
            backend.appendKv(kv, layer, qkv, qCols, qCols + kvCols, batch.slotMapping());
            Tensor out = upload(backend, rows, qCols, nans(rows * qCols));
            backend.attention(qkv, kv, layer, batch, shape, out);
            return download(backend, out);
        }
    }

    private static int[] shuffledPages(SplittableRandom random, int n) {
        int[] pages = new int[n];
        for (int i = 0; i < n; i++) {
            pages[i] = i;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = pages[i];
            pages[i] = pages[j];
            pages[j] = t;
        }
        return pages;
    }
}
