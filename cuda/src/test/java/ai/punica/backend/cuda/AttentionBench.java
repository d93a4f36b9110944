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
 * Paged decode attention on one GPU, one query row per sequence, for the Llama-2-7B shape (32 query and 32 KV
 * heads of 128) and the Llama-3-8B shape (32 / 8 heads of 128), bf16 cache in pages of 16 tokens handed out
 * shuffled. Each call is timed inside a CUDA graph of back-to-back calls that walk over enough cache layers
 * (at least {@code ROTATE_BYTES} of keys and values) that the 50 MB L2 cannot serve them: device time by events,
 * median of {@code REPS} graph launches after warm-up, divided by the calls per graph. Bandwidth is the KV bytes
 * one call must read (every visible key and value once) over its time, and its fraction of the H100's 3058 GB/s.
 * The general (prefill) kernel on the same steps is timed alongside for comparison.
 * <p>Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.AttentionBench [sweep]};
 * {@code sweep} also times the decode kernel at 2 to 32 target blocks per SM (which sets its splits).
 */
public final class AttentionBench {
    private static final int REPS = 30;
    private static final int CALLS_PER_GRAPH = 32;
    private static final long ROTATE_BYTES = 256L << 20;
    private static final double PEAK_GBS = 3058;
    private static final int PAGE_SIZE = 16;

    private record Model(String name, int heads, int kvHeads, int headDim) {
    }

    public static void main(String[] args) {
        boolean sweep = Arrays.asList(args).contains("sweep");
        List<Model> models = List.of(new Model("llama2-7b", 32, 32, 128), new Model("llama3-8b", 32, 8, 128));
        try (CudaBackend gpu = new CudaBackend()) {
            System.out.println("device " + gpu.deviceDescription() + " kernels " + gpu.kernelOrigins());
        }
        System.out.println("BENCH model batch ctx | splits | decode ms | GB/s | of 3058 | general ms | GB/s | decode speed-up");
        for (Model m : models) {
            for (int batch : new int[] {1, 8, 32, 64}) {
                for (int ctx : new int[] {512, 2048, 4096}) {
                    run(m, batch, ctx, sweep);
                }
            }
        }
    }

    private static void run(Model m, int batch, int ctx, boolean sweep) {
        long kvBytes = (long) batch * ctx * m.kvHeads * m.headDim * 2 * 2;
        Timing decode = time(o -> o, m, batch, ctx);
        Timing general = time(o -> o.decodeAttention(false), m, batch, ctx);
        System.out.printf("BENCH %-9s %5d %5d | %6d | %9.4f | %5.0f | %6.1f%% | %10.4f | %5.0f | %5.1fx%n", m.name, batch,
                ctx, decode.splits, decode.ms, gbs(kvBytes, decode.ms), 100 * gbs(kvBytes, decode.ms) / PEAK_GBS,
                general.ms, gbs(kvBytes, general.ms), general.ms / decode.ms);
        if (sweep) {
            StringBuilder line = new StringBuilder("SWEEP " + m.name + " " + batch + " " + ctx + " | blocks/SM: splits ms GB/s |");
            for (int perSm : new int[] {2, 4, 8, 16, 32}) {
                Timing t = time(o -> o.decodeBlocksPerSm(perSm), m, batch, ctx);
                line.append(String.format(" %d: %d %.4f %.0f |", perSm, t.splits, t.ms, gbs(kvBytes, t.ms)));
            }
            System.out.println(line);
        }
    }

    /** The decode splits a backend chose and its milliseconds per attention call. */
    private record Timing(int splits, float ms) {
    }

    /** One attention step of this shape on a backend of its own, with {@code options} changed from the defaults. */
    private static Timing time(UnaryOperator<CudaOptions.Builder> options, Model m, int batch, int ctx) {
        try (CudaBackend gpu = GpuChecks.open(options)) {
            return time(gpu, m, batch, ctx);
        }
    }

    private static Timing time(CudaBackend gpu, Model m, int batch, int ctx) {
        int kvCols = m.kvHeads * m.headDim;
        int pagesPerSeq = (ctx + PAGE_SIZE - 1) / PAGE_SIZE;
        int pages = batch * pagesPerSeq;
        long kvBytes = (long) batch * ctx * kvCols * 2 * 2;
        int layers = (int) Math.clamp((ROTATE_BYTES + kvBytes - 1) / kvBytes, 2, 64);
        KvStorage kv = gpu.allocateKv(layers, pages, PAGE_SIZE, m.kvHeads, m.headDim);

        // Page tables: a shuffled pool, so that a sequence's pages are scattered over the layer.
        List<Integer> pool = new ArrayList<>();
        for (int p = 0; p < pages; p++) {
            pool.add(p);
        }
        Collections.shuffle(pool, new Random(batch * 31L + ctx));
        int[] pageTables = pool.stream().mapToInt(Integer::intValue).toArray();
        int[] queryStarts = new int[batch + 1];
        int[] contextLens = new int[batch];
        int[] pageTableStarts = new int[batch + 1];
        for (int s = 0; s < batch; s++) {
            queryStarts[s + 1] = s + 1;
            contextLens[s] = ctx;
            pageTableStarts[s + 1] = (s + 1) * pagesPerSeq;
        }
        AttentionBatch step = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables, new int[batch],
                PAGE_SIZE);

        // Random keys and values (the same history for every sequence and layer, at its own pages).
        SplittableRandom rng = new SplittableRandom(7);
        Tensor history = gpu.allocate(ctx, 2 * kvCols);
        gpu.upload(random(rng, ctx * 2 * kvCols), history);
        for (int s = 0; s < batch; s++) {
            int[] slots = new int[ctx];
            for (int t = 0; t < ctx; t++) {
                slots[t] = step.slotOf(s, t);
            }
            for (int layer = 0; layer < layers; layer++) {
                gpu.appendKv(kv, layer, history, 0, kvCols, slots);
            }
        }
        gpu.free(history);
        int qCols = m.heads * m.headDim;
        Tensor qkv = gpu.allocate(batch, qCols + 2 * kvCols);
        gpu.upload(random(rng, batch * (qCols + 2 * kvCols)), qkv);
        Tensor out = gpu.allocate(batch, qCols);
        AttentionShape shape = new AttentionShape(m.heads, m.kvHeads, m.headDim, (float) (1 / Math.sqrt(m.headDim)), 0);
        Runnable layerWalk = () -> {
            for (int layer = 0; layer < layers; layer++) {
                gpu.attention(qkv, kv, layer, step, shape, out);
            }
        };
        int walks = Math.max(1, CALLS_PER_GRAPH / layers);

        Timing t = new Timing(gpu.attentionDecodeSplits(batch, shape), perCall(gpu, layerWalk, walks * layers, walks));
        gpu.free(qkv);
        gpu.free(out);
        return t;
    }

    /**
     * Milliseconds per attention call: {@code work} once eagerly (uploads its metadata, sizes the workspace),
     * then {@code walks} repetitions of it captured in one graph, median over {@code REPS} launches.
     */
    private static float perCall(CudaBackend gpu, Runnable work, int calls, int walks) {
        work.run();
        gpu.synchronize();
        try (CudaBackend.CudaGraph graph = gpu.capture(() -> {
            for (int i = 0; i < walks; i++) {
                work.run();
            }
        })) {
            for (int i = 0; i < 3; i++) {
                graph.launch();
            }
            float[] t = new float[REPS];
            for (int i = 0; i < REPS; i++) {
                t[i] = gpu.timeMillis(graph::launch);
            }
            Arrays.sort(t);
            return t[REPS / 2] / calls;
        }
    }

    private static double gbs(long bytes, float ms) {
        return bytes / (ms * 1e-3) / 1e9;
    }

    private static float[] random(SplittableRandom rng, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            double x = rng.nextDouble(-1.5, 1.5);
            v[i] = (float) (x == 0 ? 0.5 : x);
        }
        return v;
    }
}
