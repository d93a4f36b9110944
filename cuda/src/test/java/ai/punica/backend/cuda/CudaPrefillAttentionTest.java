package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.CudaAttentionTest.check;
import static ai.punica.backend.cuda.CudaAttentionTest.mixedContexts;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.AttentionShape;
import ai.punica.backend.cuda.CudaAttentionTest.Problem;
import java.util.Arrays;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The tensor-core attention kernel (attention_tc.cu) against {@link ai.punica.backend.reference.ReferenceBackend},
 * through {@link CudaAttentionTest#check}: seeded bf16 keys, values and queries, pages from a shuffled pool, the
 * output poisoned with NaN, every row within 1e-2 of the reference (bf16 operands and P, float32 accumulation and
 * softmax). Every check also asserts that the tensor-core kernel is the one that ran, and its CHECK line names the
 * kernel, the splits, the worst row's position and how many outputs were left unwritten (NaN).
 * <p>Shape classes: one 2048-token prompt; ragged prompts in one call; chunks that continue an existing cache (the
 * first query row at an offset); GQA groups 1, 3, 4, 5, 8, 16; head sizes 32, 64, 96 and 128; sliding windows; page sizes
 * 1, 12, 16, 64, 128 with lengths on either side of page and tile boundaries; sequences of one query row beside
 * prefill chunks; steps split along the keys.
 */
@Tag("gpu")
class CudaPrefillAttentionTest extends GpuBackendTest {
    /** Every step that is not a decode step takes the tensor-core kernel. */
    static final UnaryOperator<CudaOptions.Builder> TENSOR_CORES = o -> o.tensorCoreAttention(true).tensorCoreMinRows(1);
    static final String TC = "attention_prefill_tc_h";

    static Problem prefill(int[] lens, int heads, int kvHeads, int headDim, int window) {
        return new Problem(lens, lens.clone(), heads, kvHeads, headDim, window, 16, 1.5, 1);
    }

    static Problem chunks(int[] contextLens, int[] queryCounts, int heads, int kvHeads, int headDim, int window) {
        return new Problem(contextLens, queryCounts, heads, kvHeads, headDim, window, 16, 1.5, 1);
    }

    static double tc(Problem p, long seed) {
        return check("attention-tc", p, seed, TENSOR_CORES, TC + p.headDim());
    }

    @Test
    void onePromptOf2048TokensMatchesReference() {
        tc(prefill(new int[] {2048}, 8, 2, 128, 0), 1000);
        tc(prefill(new int[] {2048}, 4, 4, 64, 0), 1001);
    }

    @Test
    void raggedPromptsInOneCallMatchReference() {
        // Lengths on both sides of the 64-row and 64-key tiles, a one-token prompt, and a prompt of two tiles.
        int[] lens = {1, 17, 64, 65, 300, 129, 2, 128};
        long seed = 1100;
        // (heads, KV heads, head size): groups 1, 4 and 8 at both head sizes.
        int[][] shapes = {{4, 4, 64}, {4, 4, 128}, {8, 2, 64}, {8, 2, 128}, {16, 2, 64}, {16, 2, 128}};
        for (int[] s : shapes) {
            tc(prefill(lens, s[0], s[1], s[2], 0), seed++);
        }
        // Head sizes 32 (the fixture model's: 8 heads over 2 KV heads) and 96.
        tc(prefill(lens, 8, 2, 32, 0), seed++);
        tc(prefill(lens, 8, 8, 96, 0), seed++);
        tc(chunks(new int[] {1000, 90}, new int[] {100, 1}, 6, 2, 96, 300), seed++);
    }

    @Test
    void chunksContinuingAnExistingCacheMatchReference() {
        // Query rows start at positions 963, 3972, 6, 0 and 128: chunked prefill over earlier chunks' keys.
        int[] contexts = {1000, 4100, 70, 64, 129};
        int[] queries = {37, 128, 64, 64, 1};
        long seed = 1200;
        tc(chunks(contexts, queries, 8, 2, 128, 0), seed++);
        tc(chunks(contexts, queries, 4, 4, 64, 0), seed++);
        tc(chunks(contexts, queries, 8, 1, 128, 0), seed++);
        // One chunk of 512 rows after 1536 cached tokens, the TTFT shape of a long prompt's last chunk.
        tc(chunks(new int[] {2048}, new int[] {512}, 8, 2, 128, 0), seed++);
    }

    @Test
    void groupsThatDoNotDivideTheTileMatchReference() {
        // G = 3 (21 query rows per 64-row tile, one matrix row idle), 5 (12 rows, 4 idle), 16 (4 rows per tile).
        int[] contexts = {300, 77, 1, 140};
        int[] queries = {300, 20, 1, 70};
        long seed = 1300;
        tc(chunks(contexts, queries, 6, 2, 128, 0), seed++);
        tc(chunks(contexts, queries, 10, 2, 64, 0), seed++);
        tc(chunks(contexts, queries, 16, 1, 128, 0), seed++);
    }

    @Test
    void slidingWindowsMatchReference() {
        long seed = 1400;
        // A window shorter than a tile, one of 100 (not a multiple of 64), and a window of one token.
        tc(prefill(new int[] {700, 90, 1, 200}, 8, 2, 128, 40), seed++);
        tc(prefill(new int[] {700, 90, 1, 200}, 4, 4, 64, 100), seed++);
        tc(prefill(new int[] {150, 3}, 8, 2, 64, 1), seed++);
        // Chunks over a long cache with a window of 1000: the first visible key is far from position 0.
        tc(chunks(new int[] {3000, 1500, 64}, new int[] {200, 1, 64}, 8, 2, 128, 1000), seed++);
        tc(chunks(new int[] {4097, 2000}, new int[] {65, 300}, 8, 1, 64, 4096), seed++);
    }

    @Test
    void pageBoundariesMatchReference() {
        int[] contexts = {63, 64, 65, 127, 128, 129, 12, 13};
        int[] queries = {63, 30, 65, 1, 128, 64, 12, 1};
        long seed = 1500;
        for (int pageSize : new int[] {1, 12, 16, 64, 128}) {
            tc(chunks(contexts, queries, 8, 2, 128, 0).withPageSize(pageSize), seed++);
        }
        tc(chunks(contexts, queries, 4, 4, 64, 0).withPageSize(12), seed++);
    }

    @Test
    void oneRowQueriesBesidePrefillMatchReference() {
        // A mixed step: decode rows of many context lengths around one prefill chunk, at the default threshold.
        int[] contexts = {500, 40, 1000, 7, 3000, 16, 8192, 1};
        int[] queries = {1, 1, 37, 1, 1, 16, 1, 1};
        long seed = 1600;
        check("attention-tc", chunks(contexts, queries, 16, 4, 128, 0), seed++, o -> o, TC + 128);
        check("attention-tc", chunks(contexts, queries, 8, 8, 64, 0), seed++, o -> o, TC + 64);
        // A decode step routed to the tensor-core kernel (decode kernel off, threshold 1).
        int[] lens = mixedContexts(24, seed);
        int[] ones = new int[lens.length];
        Arrays.fill(ones, 1);
        check("attention-tc", chunks(lens, ones, 8, 2, 128, 0), seed++,
                o -> o.decodeAttention(false).tensorCoreMinRows(1), TC + 128);
        check("attention-tc", chunks(new int[] {1}, new int[] {1}, 4, 4, 64, 0), seed++,
                o -> o.decodeAttention(false).tensorCoreMinRows(1), TC + 64);
    }

    @Test
    void stepsSplitAlongTheKeysMatchReference() {
        // A 16-row chunk over 8192 cached tokens: a handful of blocks, so the kernel splits the keys (merge kernel).
        AttentionShape shape = new AttentionShape(8, 2, 128, 1, 0);
        int splits = gpu.attentionTensorCoreSplits(16, 1, shape);
        System.out.printf("CHECK attention-tc splits of a 16-row chunk (8/2 heads): %d%n", splits);
        assertThat(splits).as("splits of a 16-row chunk").isGreaterThan(1);
        long seed = 1700;
        tc(chunks(new int[] {8192}, new int[] {16}, 8, 2, 128, 0), seed++);
        tc(chunks(new int[] {8192, 300}, new int[] {3, 2}, 4, 4, 64, 0), seed++);
        // A peaky softmax (queries up to ±12) across splits, and a layer other than the first.
        tc(chunks(new int[] {5000}, new int[] {40}, 8, 2, 128, 0).withQueryRange(12), seed++);
        tc(chunks(new int[] {600, 90}, new int[] {600, 90}, 8, 2, 64, 0).withLayers(3), seed++);
        // A long prefill fills the GPU without splitting.
        assertThat(gpu.attentionTensorCoreSplits(8 * 2048, 8, new AttentionShape(32, 32, 128, 1, 0)))
                .as("splits of 8 prompts of 2048").isEqualTo(1);
    }

    @Test
    void theCudaCoreKernelRemainsTheFallback() {
        long seed = 1800;
        Problem p = chunks(new int[] {300, 40}, new int[] {300, 1}, 8, 2, 128, 0);
        // Switched off, and head sizes the tensor-core kernel is not compiled for.
        check("attention-general", p, seed++, o -> o.tensorCoreAttention(false), "attention_paged");
        check("attention-general", chunks(new int[] {300, 40}, new int[] {300, 1}, 8, 2, 72, 0), seed++,
                o -> o.tensorCoreAttention(true), "attention_paged");
        // Below the threshold: every sequence has fewer query rows than tensorCoreMinRows.
        check("attention-general", p, seed++, o -> o.tensorCoreAttention(true).tensorCoreMinRows(400),
                "attention_paged");
    }
}
