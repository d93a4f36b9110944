package ai.punica.backend.cuda;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Decode-step micro-benchmarks of the CUDA backend on one GPU: SGMV shrink+expand with one distinct
 * adapter per row (Punica's worst case for the add-on) next to the base GEMM it rides on, and paged
 * decode attention. Device time by events, median of {@code REPS} runs after warm-up; random data.
 * Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.SgmvBench}.
 */
public final class SgmvBench {
    private static final int REPS = 50;

    public static void main(String[] args) {
        int hidden = 4096;
        try (CudaBackend gpu = new CudaBackend()) {
            System.out.println("device " + gpu.deviceDescription());
            SplittableRandom rng = new SplittableRandom(1);
            Tensor w = gpu.loadWeight(TensorData.of("w", DType.BF16, hidden, hidden, random(rng, hidden * hidden, 0.02f)));
            System.out.println("BENCH batch rank | gemm4096 us (stream, graph) | shrink+expand us (stream, graph)"
                    + " | lora/gemm (graph) | lora GB/s (graph)");
            for (int batch : new int[] {1, 8, 32, 64}) {
                Tensor x = gpu.allocate(batch, hidden);
                Tensor y = gpu.allocate(batch, hidden);
                gpu.upload(random(rng, batch * hidden, 1), x);
                gpu.upload(random(rng, batch * hidden, 1), y);
                Runnable base = () -> gpu.matmul(x, w, null, y);
                float gemm = median(gpu, base);
                float gemmGraph;
                try (CudaBackend.CudaGraph g = gpu.capture(repeat(base, 20))) {
                    gemmGraph = median(gpu, g::launch) / 20;
                }
                for (int rank : new int[] {8, 16, 32, 64}) {
                    LoraWeights lw = LoraWeights.empty(batch);
                    for (int s = 0; s < batch; s++) {
                        lw.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, rank, hidden, random(rng, rank * hidden, 0.05f)));
                        lw.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, hidden, rank, random(rng, hidden * rank, 0.05f)));
                        lw.rank()[s] = rank;
                        lw.scale()[s] = 2f;
                    }
                    int[] starts = new int[batch + 1];
                    int[] slots = new int[batch];
                    for (int i = 0; i < batch; i++) {
                        starts[i + 1] = i + 1;
                        slots[i] = i;
                    }
                    Segments seg = new Segments(starts, slots);
                    Tensor v = gpu.allocate(batch, rank);
                    Runnable step = () -> {
                        gpu.sgmvShrink(x, lw, seg, v);
                        gpu.sgmvExpand(v, lw, seg, y, 0);
                    };
                    float lora = median(gpu, step);
                    float loraGraph;
                    try (CudaBackend.CudaGraph g = gpu.capture(repeat(step, 20))) {
                        loraGraph = median(gpu, g::launch) / 20;
                    }
                    double bytes = batch * 2.0 * hidden * rank * 2 + 3.0 * batch * hidden * 2;
                    System.out.printf("BENCH %5d %4d | %10.1f %8.1f | %16.1f %8.1f | %8.2f | %8.0f%n", batch, rank,
                            gemm * 1e3, gemmGraph * 1e3, lora * 1e3, loraGraph * 1e3, loraGraph / gemmGraph,
                            bytes / (loraGraph * 1e-3) / 1e9);
                    for (int s = 0; s < batch; s++) {
                        gpu.free(lw.a()[s]);
                        gpu.free(lw.b()[s]);
                    }
                    gpu.free(v);
                }
                gpu.free(x);
                gpu.free(y);
            }
            groups(gpu, rng);
            attention(gpu, rng);
        }
    }

    /**
     * The LoRA add-on of q|k|v (4096 → 4096|1024|1024, GQA) and gate|up (4096 → 11008|11008) with one
     * distinct adapter per row: one single shrink + expand per projection (6 or 4 launches) against the
     * grouped ops (2 launches), graph-timed, per batch and rank.
     */
    private static void groups(CudaBackend gpu, SplittableRandom rng) {
        int hidden = 4096;
        System.out.println("BENCH group batch rank | singles us (graph) | group us (graph) | saved us");
        for (int[] outs : new int[][] {{4096, 1024, 1024}, {11008, 11008}}) {
            int n = outs.length;
            String name = n == 3 ? "q|k|v" : "gate|up";
            int width = Arrays.stream(outs).sum();
            int[] yCols = new int[n];
            for (int m = 1; m < n; m++) {
                yCols[m] = yCols[m - 1] + outs[m - 1];
            }
            for (int batch : new int[] {1, 8, 32, 64}) {
                Tensor x = gpu.allocate(batch, hidden);
                Tensor y = gpu.allocate(batch, width);
                gpu.upload(random(rng, batch * hidden, 1), x);
                gpu.upload(random(rng, batch * width, 1), y);
                int[] starts = new int[batch + 1];
                int[] slots = new int[batch];
                for (int i = 0; i < batch; i++) {
                    starts[i + 1] = i + 1;
                    slots[i] = i;
                }
                Segments seg = new Segments(starts, slots);
                for (int rank : new int[] {16, 64}) {
                    List<LoraWeights> group = new ArrayList<>();
                    for (int m = 0; m < n; m++) {
                        LoraWeights lw = LoraWeights.empty(batch);
                        for (int s = 0; s < batch; s++) {
                            lw.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, rank, hidden, random(rng, rank * hidden, 0.05f)));
                            lw.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, outs[m], rank, random(rng, outs[m] * rank, 0.05f)));
                            lw.rank()[s] = rank;
                            lw.scale()[s] = 2f;
                        }
                        group.add(lw);
                    }
                    Tensor v = gpu.allocate(batch, n * rank);
                    Tensor vSingle = gpu.allocate(batch, rank);
                    Runnable singles = () -> {
                        for (int m = 0; m < n; m++) {
                            gpu.sgmvShrink(x, group.get(m), seg, vSingle);
                            gpu.sgmvExpand(vSingle, group.get(m), seg, y, yCols[m]);
                        }
                    };
                    Runnable grouped = () -> {
                        gpu.sgmvShrinkGroup(x, group, seg, v);
                        gpu.sgmvExpandGroup(v, group, seg, y, yCols);
                    };
                    float singlesGraph = graphMillis(gpu, singles, 20);
                    float groupGraph = graphMillis(gpu, grouped, 20);
                    System.out.printf("BENCH %-7s %5d %4d | %10.1f | %10.1f | %8.1f%n", name, batch, rank,
                            singlesGraph * 1e3, groupGraph * 1e3, (singlesGraph - groupGraph) * 1e3);
                    for (LoraWeights lw : group) {
                        for (int s = 0; s < batch; s++) {
                            gpu.free(lw.a()[s]);
                            gpu.free(lw.b()[s]);
                        }
                    }
                    gpu.free(v);
                    gpu.free(vSingle);
                }
                gpu.free(x);
                gpu.free(y);
            }
        }
    }

    /** Median device time of one {@code work}, from a graph of {@code times} repetitions (warmed up eagerly once). */
    private static float graphMillis(CudaBackend gpu, Runnable work, int times) {
        work.run();
        try (CudaBackend.CudaGraph g = gpu.capture(repeat(work, times))) {
            return median(gpu, g::launch) / times;
        }
    }

    private static void attention(CudaBackend gpu, SplittableRandom rng) {
        int heads = 32;
        int kvHeads = 8;
        int hd = 128;
        int pageSize = 16;
        System.out.println("BENCH attention batch ctx | us | KV GB/s");
        for (int[] c : new int[][] {{1, 4096}, {32, 512}, {32, 2048}, {64, 1024}}) {
            int batch = c[0];
            int ctx = c[1];
            int pagesPerSeq = ctx / pageSize;
            KvStorage kv = gpu.allocateKv(1, batch * pagesPerSeq, pageSize, kvHeads, hd);
            int cols = (heads + 2 * kvHeads) * hd;
            // Fill the cache with random keys and values through appendKv.
            int[] starts = new int[batch + 1];
            int[] lens = new int[batch];
            int[] ptStarts = new int[batch];
            int[] pages = new int[batch * pagesPerSeq];
            for (int s = 0; s < batch; s++) {
                starts[s + 1] = s + 1;
                lens[s] = ctx;
                ptStarts[s] = s * pagesPerSeq;
            }
            for (int p = 0; p < pages.length; p++) {
                pages[p] = p;
            }
            Tensor hist = gpu.allocate(ctx, cols);
            gpu.upload(random(rng, ctx * cols, 1), hist);
            for (int s = 0; s < batch; s++) {
                int[] slots = new int[ctx];
                for (int t = 0; t < ctx; t++) {
                    slots[t] = (s * pagesPerSeq + t / pageSize) * pageSize + t % pageSize;
                }
                gpu.appendKv(kv, 0, hist, heads * hd, (heads + kvHeads) * hd, slots);
            }
            Tensor qkv = gpu.allocate(batch, cols);
            gpu.upload(random(rng, batch * cols, 1), qkv);
            Tensor out = gpu.allocate(batch, heads * hd);
            AttentionBatch ab = new AttentionBatch(starts, lens, ptStarts, pages, new int[batch], pageSize);
            AttentionShape shape = new AttentionShape(heads, kvHeads, hd, (float) (1 / Math.sqrt(hd)), 0);
            Runnable op = () -> gpu.attention(qkv, kv, 0, ab, shape, out);
            op.run();
            float ms;
            try (CudaBackend.CudaGraph g = gpu.capture(repeat(op, 10))) {
                ms = median(gpu, g::launch) / 10;
            }
            double bytes = (double) batch * ctx * kvHeads * hd * 2 * 2;
            System.out.printf("BENCH attention %5d %5d | %8.1f | %6.0f%n", batch, ctx, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
            gpu.free(hist);
            gpu.free(qkv);
            gpu.free(out);
        }
    }

    private static Runnable repeat(Runnable r, int times) {
        return () -> {
            for (int i = 0; i < times; i++) {
                r.run();
            }
        };
    }

    private static float median(CudaBackend gpu, Runnable work) {
        for (int i = 0; i < 5; i++) {
            work.run();
        }
        float[] t = new float[REPS];
        for (int i = 0; i < REPS; i++) {
            t[i] = gpu.timeMillis(work);
        }
        Arrays.sort(t);
        return t[REPS / 2];
    }

    private static float[] random(SplittableRandom rng, int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            double x = rng.nextDouble(-scale, scale);
            v[i] = (float) (x == 0 ? scale / 3 : x);
        }
        return v;
    }
}
