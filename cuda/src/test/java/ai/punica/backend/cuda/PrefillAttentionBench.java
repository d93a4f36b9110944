package ai.punica.backend.cuda;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.KvStorage;
import ai.punica.backend.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;

/**
 * Prefill and mixed-step attention on one GPU: the tensor-core kernel (attention_tc.cu) against the CUDA-core
 * kernel (attention_paged) on the same seeded data (a backend per kernel: CUDA options are fixed when a backend
 * starts), for the Llama-2-7B (32/32 heads of 128) and Llama-3-8B (32/8) shapes, bf16 cache in shuffled pages of
 * 16 tokens.
 * <ul>
 *   <li>{@code cuBLAS}: an 8192³ bf16 GEMM through the backend, the attainable tensor-core rate of this card
 *       (the H200's dense bf16 datasheet figure is 989 TFLOP/s).</li>
 *   <li>{@code prefill}: batch × prompt tokens, every prompt whole (causal). FLOPs counted exactly: each query
 *       row at position p with w visible keys costs 4·w·headDim per query head (Q·Kᵀ and P·V, 2 per
 *       multiply-add). TFLOP/s and the % of both rates above; the target is ≥ 50% at 2k context, batch 8.</li>
 *   <li>{@code mixed}: one 512-row chunk over 1536 cached tokens beside 31 decode rows at 2048.</li>
 *   <li>{@code rows}: 32 sequences of n query rows at context 2048 (n = 1 … 64), both kernels forced (decode
 *       kernel off): where the tensor-core kernel starts to pay, for {@code CudaOptions.TENSOR_CORE_MIN_ROWS}.</li>
 *   <li>{@code ttft}: the attention share of a 32-layer prefill of the batch-8 × 2048 step, both kernels.</li>
 * </ul>
 * Device time by events around one eager call, median of {@code REPS} after a warm-up call. Every line also
 * prints ‖tc − cuda-core‖ / ‖cuda-core‖ over the whole output (both bf16), so a wrong result shows here too.
 * <p>Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.PrefillAttentionBench}, or the
 * {@code attention} part of {@code tools/bench/gpu_session.sh}.
 */
public final class PrefillAttentionBench {
    private static final int REPS = 15;
    private static final int PAGE_SIZE = 16;
    private static final double DATASHEET_TFLOPS = 989.4;
    private static final UnaryOperator<CudaOptions.Builder> TENSOR_CORES =
            o -> o.tensorCoreAttention(true).tensorCoreMinRows(1).decodeAttention(false);
    private static final UnaryOperator<CudaOptions.Builder> CUDA_CORES =
            o -> o.tensorCoreAttention(false).decodeAttention(false);

    private record Model(String name, int heads, int kvHeads, int headDim) {
        AttentionShape shape() {
            return new AttentionShape(heads, kvHeads, headDim, (float) (1 / Math.sqrt(headDim)), 0);
        }
    }

    /** Timings of one step on both kernels. */
    private record Result(double tcMs, double oldMs, double flops, double diff, String kernel, int splits) {
    }

    public static void main(String[] args) {
        Model llama2 = new Model("llama2-7b", 32, 32, 128);
        Model llama3 = new Model("llama3-8b", 32, 8, 128);
        // One backend per kernel (CUDA options are fixed when a backend starts); each case uploads the same seeded
        // data to both.
        try (CudaBackend gpu = GpuChecks.open(TENSOR_CORES); CudaBackend cudaCores = GpuChecks.open(CUDA_CORES)) {
            System.out.println("device " + gpu.deviceDescription() + " kernels " + gpu.kernelOrigins());
            double peak = gemmTflops(gpu, 8192);
            System.out.printf("BENCH cuBLAS bf16 GEMM 8192^3: %.0f TFLOP/s (datasheet dense bf16 %.0f)%n", peak,
                    DATASHEET_TFLOPS);
            System.out.println("BENCH case model batch rows/seq ctx | kernel splits | tc ms | TFLOP/s | % of cuBLAS"
                    + " | % of datasheet | cuda-core ms | TFLOP/s | speed-up | rel diff");
            for (Model m : List.of(llama2, llama3)) {
                for (int batch : new int[] {8, 1}) {
                    int[] ctx = new int[batch];
                    Arrays.fill(ctx, 2048);
                    Result r = run(gpu, cudaCores, m, ctx, ctx.clone(), 0);
                    print("prefill", m, batch, 2048, 2048, r, peak);
                    if (batch == 8) {
                        System.out.printf("BENCH ttft %s 8x2048: attention of a 32-layer prefill %.1f ms (tensor cores)"
                                + " vs %.1f ms (CUDA cores): %.1f ms less per prefill step%n", m.name, 32 * r.tcMs,
                                32 * r.oldMs, 32 * (r.oldMs - r.tcMs));
                    }
                }
                int[] ctx = new int[32];
                int[] rows = new int[32];
                Arrays.fill(ctx, 2048);
                Arrays.fill(rows, 1);
                rows[0] = 512;
                print("mixed", m, 32, 0, 2048, run(gpu, cudaCores, m, ctx, rows, 0), peak);
                // A sliding window of 512 over 2048-token prompts.
                int[] eight = new int[8];
                Arrays.fill(eight, 2048);
                print("window512", m, 8, 2048, 2048, run(gpu, cudaCores, m, eight, eight.clone(), 512), peak);
            }
            for (int n : new int[] {1, 2, 4, 8, 16, 32, 64}) {
                int[] ctx = new int[32];
                int[] rows = new int[32];
                Arrays.fill(ctx, 2048);
                Arrays.fill(rows, n);
                print("rows", llama3, 32, n, 2048, run(gpu, cudaCores, llama3, ctx, rows, 0), peak);
            }
        }
    }

    private static void print(String kind, Model m, int batch, int rowsPerSeq, int ctx, Result r, double peak) {
        double tc = r.flops / (r.tcMs * 1e-3) / 1e12;
        double old = r.flops / (r.oldMs * 1e-3) / 1e12;
        System.out.printf("BENCH %-9s %-9s %3d %5s %5d | %s %2d | %8.3f | %6.1f | %5.1f%% | %5.1f%% | %8.3f | %6.1f |"
                        + " %5.1fx | %.1e%n", kind, m.name, batch, rowsPerSeq == 0 ? "mixed" : String.valueOf(rowsPerSeq),
                ctx, r.kernel, r.splits, r.tcMs, tc, 100 * tc / peak, 100 * tc / DATASHEET_TFLOPS, r.oldMs, old,
                r.oldMs / r.tcMs, r.diff);
    }

    /** The cache, queries and output of one step on one backend. */
    private record StepTensors(KvStorage kv, Tensor qkv, Tensor out) {
    }

    /**
     * One step (per sequence its context and query rows) on both kernels: {@code gpu} takes the tensor-core
     * kernel, {@code cudaCores} the CUDA-core one, each on its own copy of the same seeded data.
     */
    private static Result run(CudaBackend gpu, CudaBackend cudaCores, Model m, int[] contextLens, int[] queryCounts,
                              int window) {
        int seqs = contextLens.length;
        int[] queryStarts = new int[seqs + 1];
        int[] pageTableStarts = new int[seqs + 1];
        int pages = 0;
        for (int s = 0; s < seqs; s++) {
            queryStarts[s + 1] = queryStarts[s] + queryCounts[s];
            pageTableStarts[s] = pages;
            pages += (contextLens[s] + PAGE_SIZE - 1) / PAGE_SIZE;
        }
        pageTableStarts[seqs] = pages;
        List<Integer> pool = new ArrayList<>();
        for (int p = 0; p < pages; p++) {
            pool.add(p);
        }
        Collections.shuffle(pool, new Random(seqs * 31L + contextLens[0]));
        int[] pageTables = pool.stream().mapToInt(Integer::intValue).toArray();
        int rows = queryStarts[seqs];
        AttentionBatch step = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables, new int[rows],
                PAGE_SIZE);
        int qCols = m.heads * m.headDim;
        AttentionShape shape = new AttentionShape(m.heads, m.kvHeads, m.headDim, (float) (1 / Math.sqrt(m.headDim)),
                window);

        StepTensors t = upload(gpu, m, step, pages);
        double tc = medianMs(gpu, () -> gpu.attention(t.qkv, t.kv, 0, step, shape, t.out), REPS);
        String kernel = gpu.lastAttentionKernel();
        int splits = gpu.attentionTensorCoreSplits(rows, seqs, shape);
        float[] tcOut = new float[rows * qCols];
        gpu.download(t.out, tcOut);
        gpu.free(t.qkv);
        gpu.free(t.out);
        StepTensors c = upload(cudaCores, m, step, pages);
        double old = medianMs(cudaCores, () -> cudaCores.attention(c.qkv, c.kv, 0, step, shape, c.out),
                Math.max(3, REPS / 3));
        float[] oldOut = new float[rows * qCols];
        cudaCores.download(c.out, oldOut);
        cudaCores.free(c.qkv);
        cudaCores.free(c.out);
        // KvStorage has no free: each case's cache stays until the backends close (a few hundred MB at most each).

        double flops = 0;
        for (int s = 0; s < seqs; s++) {
            for (int r = queryStarts[s]; r < queryStarts[s + 1]; r++) {
                int pos = step.position(s, r);
                int visible = window > 0 ? Math.min(window, pos + 1) : pos + 1;
                flops += 4.0 * visible * m.headDim * m.heads;
            }
        }
        return new Result(tc, old, flops, GpuChecks.relativeError(tcOut, oldOut), kernel, splits);
    }

    /** The step's keys and values appended to a fresh cache, its qkv rows and an output, from seed 11 on any backend. */
    private static StepTensors upload(CudaBackend gpu, Model m, AttentionBatch step, int pages) {
        int seqs = step.numSequences();
        int[] contextLens = step.contextLens();
        int kvCols = m.kvHeads * m.headDim;
        KvStorage kv = gpu.allocateKv(1, pages, PAGE_SIZE, m.kvHeads, m.headDim);
        SplittableRandom rng = new SplittableRandom(11);
        int longest = Arrays.stream(contextLens).max().orElse(0);
        Tensor history = gpu.allocate(longest, 2 * kvCols);
        gpu.upload(GpuChecks.random(rng, longest * 2 * kvCols, 1.5), history);
        for (int s = 0; s < seqs; s++) {
            int[] slots = new int[contextLens[s]];
            for (int t = 0; t < slots.length; t++) {
                slots[t] = step.slotOf(s, t);
            }
            Tensor part = slots.length == longest ? history : gpu.allocate(slots.length, 2 * kvCols);
            if (part != history) {
                gpu.upload(GpuChecks.random(rng, slots.length * 2 * kvCols, 1.5), part);
            }
            gpu.appendKv(kv, 0, part, 0, kvCols, slots);
            if (part != history) {
                gpu.free(part);
            }
        }
        gpu.free(history);
        int rows = step.numRows();
        int qCols = m.heads * m.headDim;
        Tensor qkv = gpu.allocate(rows, qCols + 2 * kvCols);
        gpu.upload(GpuChecks.random(rng, rows * (qCols + 2 * kvCols), 1.5), qkv);
        Tensor out = gpu.allocate(rows, qCols);
        return new StepTensors(kv, qkv, out);
    }

    private static double medianMs(CudaBackend gpu, Runnable call, int reps) {
        call.run();
        gpu.synchronize();
        float[] t = new float[reps];
        for (int i = 0; i < reps; i++) {
            t[i] = gpu.timeMillis(call);
        }
        Arrays.sort(t);
        return t[reps / 2];
    }

    /** TFLOP/s of an n³ bf16 GEMM through the backend (cuBLAS), median of 10. */
    private static double gemmTflops(CudaBackend gpu, int n) {
        SplittableRandom rng = new SplittableRandom(3);
        Tensor x = gpu.allocate(n, n);
        Tensor w = gpu.allocate(n, n);
        Tensor y = gpu.allocate(n, n);
        gpu.upload(GpuChecks.random(rng, n * n, 1), x);
        gpu.upload(GpuChecks.random(rng, n * n, 1), w);
        double ms = medianMs(gpu, () -> gpu.matmul(x, w, null, y), 10);
        gpu.free(x);
        gpu.free(w);
        gpu.free(y);
        return 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    }
}
