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
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Decode-step micro-benchmarks of the CUDA backend on one GPU: SGMV shrink+expand with one distinct
 * adapter per row (Punica's worst case for the add-on) next to the base GEMM it rides on, and paged
 * decode attention. Device time by events, median of {@code REPS} runs after warm-up; random data. First, the
 * prefill shapes of issue 14 (8 × 128 and 1 × 1024 rows, L2 flushed before each call): the CUDA-core kernels
 * against the tensor-core ones, and the crossover in rows per segment that sets {@link CudaOptions#sgmvTcMinRows}.
 * Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.SgmvBench}.
 */
public final class SgmvBench {
    private static final int REPS = 50;

    public static void main(String[] args) {
        int hidden = 4096;
        try (CudaBackend gpu = new CudaBackend()) {
            System.out.println("device " + gpu.deviceDescription() + " kernels " + gpu.kernelOrigins());
            SplittableRandom rng = new SplittableRandom(1);
            prefill(rng);
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

    /**
     * Prefill-shaped LoRA of one projection, rank 16, 4096 → 4096 and 4096 → 11008, shrink + expand, L2 flushed
     * before each timed call: the CUDA-core kernels ({@code sgmvTcMinRows = 0}) against the tensor-core ones
     * (forced, {@code = 1}), next to the best published SGMV's times (issue 14: 33 and 47 µs). Then the
     * crossover: 8 and 32 segments of 1 to 128 rows, both paths, to set the threshold (the default path is
     * named in the last column). One backend per path (CUDA options are fixed when a backend starts), each
     * problem drawn once and uploaded to every backend that times it; the backends close before the decode
     * benchmarks.
     */
    private static void prefill(SplittableRandom rng) {
        int hidden = 4096;
        int rank = 16;
        try (CudaBackend cudaCoreGpu = GpuChecks.open(o -> o.sgmvTcMinRows(0));
             CudaBackend tensorCoreGpu = GpuChecks.open(o -> o.sgmvTcMinRows(1));
             CudaBackend defaultGpu = GpuChecks.open(o -> o.sgmvTcMinRows(CudaOptions.SGMV_TC_MIN_ROWS))) {
            Cold cudaCores = Cold.on(cudaCoreGpu, hidden);
            Cold tensorCores = Cold.on(tensorCoreGpu, hidden);
            Cold byDefault = Cold.on(defaultGpu, hidden);
            // One untimed round on each path first: the first timed row once measured 60.8 µs for what the
            // crossover table, later in the same run, measured at 28.9 µs (JIT, first launches, lazy allocations).
            HostProblem warm = HostProblem.draw(new SplittableRandom(1), 8, 128, hidden, hidden, rank);
            for (var path : List.of(Map.entry(cudaCoreGpu, cudaCores), Map.entry(tensorCoreGpu, tensorCores))) {
                Problem p = warm.on(path.getKey());
                path.getValue().median(p.both());
                p.free();
            }
            System.out.println("BENCH prefill segs x rows, rank " + rank + ", in→out | cuda-core us | tensor-core us"
                    + " (shrink, expand) | target us | speed-up | tc launches");
            for (int[] shape : new int[][] {{8, 128}, {1, 1024}}) {
                for (int out : new int[] {4096, 11008}) {
                    HostProblem h = HostProblem.draw(rng, shape[0], shape[1], hidden, out, rank);
                    Problem p = h.on(cudaCoreGpu);
                    float old = cudaCores.median(p.both());
                    p.free();
                    p = h.on(tensorCoreGpu);
                    long before = tensorCoreGpu.sgmvTensorCoreLaunches();
                    float tc = tensorCores.median(p.both());
                    long launches = tensorCoreGpu.sgmvTensorCoreLaunches() - before;
                    float tcShrink = tensorCores.median(p.shrink());
                    float tcExpand = tensorCores.median(p.expand());
                    p.free();
                    int target = out == 4096 ? 33 : 47;
                    System.out.printf("BENCH prefill %d x %4d, %d→%-5d | %8.1f | %8.1f (%6.1f, %6.1f) | %3d %s | %5.2fx"
                                    + " | %d%n", shape[0], shape[1], hidden, out, old * 1e3, tc * 1e3, tcShrink * 1e3,
                            tcExpand * 1e3, target, tc * 1e3 <= target ? "met" : "MISSED", old / tc, launches);
                }
            }
            System.out.println("BENCH crossover segs rows/seg, 4096→4096 rank 16, cold | cuda-core us | tensor-core us"
                    + " | faster | default path (sgmvTcMinRows " + CudaOptions.SGMV_TC_MIN_ROWS + ")");
            for (int segs : new int[] {8, 32}) {
                for (int perSeg : new int[] {1, 2, 4, 8, 16, 32, 64, 128}) {
                    HostProblem h = HostProblem.draw(rng, segs, perSeg, hidden, hidden, rank);
                    Problem p = h.on(cudaCoreGpu);
                    float old = cudaCores.median(p.both());
                    p.free();
                    p = h.on(tensorCoreGpu);
                    long before = tensorCoreGpu.sgmvTensorCoreLaunches();
                    float tc = tensorCores.median(p.both());
                    boolean tookTc = tensorCoreGpu.sgmvTensorCoreLaunches() > before;
                    p.free();
                    p = h.on(defaultGpu);
                    before = defaultGpu.sgmvTensorCoreLaunches();
                    p.both().run();
                    boolean defaultTc = defaultGpu.sgmvTensorCoreLaunches() > before;
                    p.free();
                    System.out.printf("BENCH crossover %3d %4d | %8.1f | %8s | %-11s | %s%n", segs, perSeg, old * 1e3,
                            tookTc ? String.format("%8.1f", tc * 1e3) : "n/a",
                            tookTc ? (tc < old ? "tensor-core" : "cuda-core") : "decode step",
                            defaultTc ? "tensor-core" : "cuda-core");
                }
            }
            // A mixed step: decode rows of distinct adapters beside one prefill chunk. The default threshold runs the
            // chunk on tensor cores and the decode rows on CUDA cores (two launches each for shrink and expand).
            System.out.println("BENCH mixed decode rows + chunk rows, 4096→4096 rank 16, cold | cuda-core us"
                    + " | default us (both kernels) | tc launches");
            for (int[] mix : new int[][] {{32, 256}, {32, 1024}, {8, 128}}) {
                int[] lens = new int[mix[0] + 1];
                Arrays.fill(lens, 1);
                lens[mix[0]] = mix[1];
                HostProblem h = HostProblem.draw(rng, lens, hidden, hidden, rank);
                Problem p = h.on(cudaCoreGpu);
                float old = cudaCores.median(p.both());
                p.free();
                p = h.on(defaultGpu);
                long before = defaultGpu.sgmvTensorCoreLaunches();
                float both = byDefault.median(p.both());
                long launches = defaultGpu.sgmvTensorCoreLaunches() - before;
                p.free();
                System.out.printf("BENCH mixed %3d + %4d | %8.1f | %8.1f | %d%n", mix[0], mix[1], old * 1e3, both * 1e3,
                        launches);
            }
            cudaCores.free();
            tensorCores.free();
            byDefault.free();
        }
    }

    /** A backend and its L2-flush buffers: times work cold on that backend's stream. */
    private record Cold(CudaBackend gpu, Tensor[] flush) {
        static Cold on(CudaBackend gpu, int hidden) {
            return new Cold(gpu, new Tensor[] {gpu.allocate(8192, hidden), gpu.allocate(8192, hidden),
                    gpu.allocate(8192, hidden)});
        }

        float median(Runnable work) {
            // 192 MB of traffic, above any L2.
            return coldMedian(gpu, () -> gpu.add(flush[0], flush[1], flush[2]), work);
        }

        void free() {
            for (Tensor t : flush) {
                gpu.free(t);
            }
        }
    }

    /**
     * One problem's data on the host, drawn once (adapters slot by slot, then x and y) so that every backend
     * timing it gets the same values: segments of the given lengths, a distinct rank-{@code rank} adapter each.
     */
    private record HostProblem(int[] lens, int in, int out, int rank, float[][] a, float[][] b, float[] x, float[] y) {
        /** {@code segs} segments of {@code perSeg} rows. */
        static HostProblem draw(SplittableRandom rng, int segs, int perSeg, int in, int out, int rank) {
            int[] lens = new int[segs];
            Arrays.fill(lens, perSeg);
            return draw(rng, lens, in, out, rank);
        }

        static HostProblem draw(SplittableRandom rng, int[] lens, int in, int out, int rank) {
            int segs = lens.length;
            int rows = Arrays.stream(lens).sum();
            float[][] a = new float[segs][];
            float[][] b = new float[segs][];
            for (int s = 0; s < segs; s++) {
                a[s] = random(rng, rank * in, 0.05f);
                b[s] = random(rng, out * rank, 0.05f);
            }
            return new HostProblem(lens, in, out, rank, a, b, random(rng, rows * in, 1), random(rng, rows * out, 1));
        }

        /** The problem on {@code gpu}: adapter slot i for segment i. */
        Problem on(CudaBackend gpu) {
            int segs = lens.length;
            int rows = Arrays.stream(lens).sum();
            LoraWeights lw = LoraWeights.empty(segs);
            for (int s = 0; s < segs; s++) {
                lw.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, rank, in, a[s]));
                lw.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, out, rank, b[s]));
                lw.rank()[s] = rank;
                lw.scale()[s] = 2f;
            }
            Problem p = new Problem(gpu, lw, segments(lens), gpu.allocate(rows, in), gpu.allocate(rows, rank),
                    gpu.allocate(rows, out));
            gpu.upload(x, p.x());
            gpu.upload(y, p.y());
            return p;
        }

        private static Segments segments(int[] lens) {
            int[] starts = new int[lens.length + 1];
            int[] slots = new int[lens.length];
            for (int i = 0; i < lens.length; i++) {
                starts[i + 1] = starts[i] + lens[i];
                slots[i] = i;
            }
            return new Segments(starts, slots);
        }
    }

    /** A {@link HostProblem} on one backend. */
    private record Problem(CudaBackend gpu, LoraWeights lw, Segments seg, Tensor x, Tensor v, Tensor y) {
        Runnable shrink() {
            return () -> gpu.sgmvShrink(x, lw, seg, v);
        }

        Runnable expand() {
            return () -> gpu.sgmvExpand(v, lw, seg, y, 0);
        }

        Runnable both() {
            Runnable s = shrink();
            Runnable e = expand();
            return () -> {
                s.run();
                e.run();
            };
        }

        void free() {
            for (int s = 0; s < lw.slots(); s++) {
                gpu.free(lw.a()[s]);
                gpu.free(lw.b()[s]);
            }
            gpu.free(x);
            gpu.free(v);
            gpu.free(y);
        }
    }

    /** Median device time of {@code work} with L2 flushed before each run (the flush is not timed). */
    private static float coldMedian(CudaBackend gpu, Runnable flushL2, Runnable work) {
        for (int i = 0; i < 3; i++) {
            work.run();
        }
        float[] t = new float[REPS];
        for (int i = 0; i < REPS; i++) {
            flushL2.run();
            t[i] = gpu.timeMillis(work);
        }
        Arrays.sort(t);
        return t[REPS / 2];
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
