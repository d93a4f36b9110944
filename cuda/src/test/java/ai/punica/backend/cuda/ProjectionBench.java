package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * What the LoRA add-on costs on top of each projection of a Llama-2-7B decode step, as the model runs it
 * ({@link CudaBackend#matmulLora}): q|k|v (4096 → 3·4096), o (4096 → 4096), gate|up (4096 → 2·11008) and
 * down (11008 → 4096), rank-16 adapters, one distinct adapter per row (Punica's Distinct workload), batch 1
 * to 64. Four timings per case, device time per projection from CUDA graphs of {@value #LAYERS} layers
 * replayed (each layer its own base weights and adapters, so that, as in a real step, neither the weights
 * nor the adapters are in L2 when a projection starts): the GEMM alone; GEMM + LoRA as two launches (shrink,
 * expand) on one stream; the same with the shrink overlapping the GEMM on a side stream; GEMM + the fused
 * cluster kernel (sm_90, the default for decode steps). The add-on over the GEMM, times the
 * 32 layers, is what the LoRA costs a decode step on the device.
 * Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.ProjectionBench}.
 */
public final class ProjectionBench {
    private static final int LAYERS = 8;
    private static final int RANK = 16;
    private static final int REPS = 30;

    private record Shape(String name, int in, int[] outs) {
        int total() {
            return Arrays.stream(outs).sum();
        }
    }

    public static void main(String[] args) {
        List<Shape> shapes = List.of(new Shape("q|k|v", 4096, new int[] {4096, 4096, 4096}),
                new Shape("o", 4096, new int[] {4096}), new Shape("gate|up", 4096, new int[] {11008, 11008}),
                new Shape("down", 11008, new int[] {4096}));
        // The three LoRA paths are switches fixed when a backend starts: one backend per path, the same layers on each.
        try (CudaBackend oneStream = GpuChecks.open(o -> o.fusedLora(false).loraOverlap(false));
             CudaBackend overlapped = GpuChecks.open(o -> o.fusedLora(false).loraOverlap(true));
             CudaBackend fused = GpuChecks.open(o -> o.fusedLora(true))) {
            System.out.println("device " + fused.deviceDescription());
            System.out.println("BENCH proj     batch | gemm us | +lora two launches, one stream us (add-on) | two launches,"
                    + " shrink overlapped (add-on) | fused cluster kernel (add-on)");
            SplittableRandom rng = new SplittableRandom(3);
            double[][] stepAddOn = new double[4][3];
            int[] batches = {1, 8, 32, 64};
            int maxBatch = Arrays.stream(batches).max().orElseThrow();
            for (Shape shape : shapes) {
                long seed = rng.nextLong();
                List<Layers> paths = new ArrayList<>();
                for (CudaBackend gpu : List.of(oneStream, overlapped, fused)) {
                    paths.add(new Layers(gpu, shape, maxBatch, new SplittableRandom(seed)));
                }
                for (int bi = 0; bi < batches.length; bi++) {
                    int batch = batches[bi];
                    float[] x = GpuChecks.random(rng, batch * shape.in(), 1);
                    // Distinct: row i is a segment of its own, in slot i.
                    Segments seg = CudaSgmvGroupTest.segments(CudaSgmvTest.fill(batch, 1), CudaSgmvTest.iota(batch));
                    double gemm = paths.get(2).gemmMicros(x, batch);
                    double[] lora = new double[paths.size()];
                    for (int k = 0; k < lora.length; k++) {
                        lora[k] = paths.get(k).loraMicros(x, batch, seg);
                    }
                    double[] addOn = {lora[0] - gemm, lora[1] - gemm, lora[2] - gemm};
                    for (int k = 0; k < addOn.length; k++) {
                        stepAddOn[bi][k] += 32 * addOn[k] / 1e3;
                    }
                    System.out.printf(Locale.ROOT, "BENCH %-8s %5d | %7.1f | %8.1f (%6.1f) | %8.1f (%6.1f) | %8.1f (%6.1f)%n",
                            shape.name(), batch, gemm, lora[0], addOn[0], lora[1], addOn[1], lora[2], addOn[2]);
                }
                for (Layers layers : paths) {
                    layers.free();
                }
            }
            for (int bi = 0; bi < batches.length; bi++) {
                System.out.printf(Locale.ROOT, "BENCH LoRA add-on of a 32-layer step, batch %d: %.2f ms two launches on one"
                                + " stream, %.2f ms with the shrink overlapped, %.2f ms fused%n", batches[bi], stepAddOn[bi][0],
                        stepAddOn[bi][1], stepAddOn[bi][2]);
            }
        }
    }

    /**
     * {@value #LAYERS} layers of one projection on {@code gpu}: each layer its own device copy of the base weight
     * and of rank-{@value #RANK} adapters in every slot up to {@code maxBatch} (the values may repeat: the timing
     * does not depend on them).
     */
    private static final class Layers {
        private final CudaBackend gpu;
        private final Shape shape;
        private final int[] cols;
        private final Tensor[] weights = new Tensor[LAYERS];
        private final List<List<LoraWeights>> groups = new ArrayList<>();
        private final List<Tensor> owned = new ArrayList<>();

        Layers(CudaBackend gpu, Shape shape, int maxBatch, SplittableRandom rng) {
            this.gpu = gpu;
            this.shape = shape;
            int n = shape.outs().length;
            cols = new int[n];
            for (int m = 1; m < n; m++) {
                cols[m] = cols[m - 1] + shape.outs()[m - 1];
            }
            TensorData base = TensorData.of("w", DType.BF16, shape.total(), shape.in(),
                    GpuChecks.random(rng, shape.total() * shape.in(), 0.02));
            for (int l = 0; l < LAYERS; l++) {
                weights[l] = gpu.loadWeight(base);
                owned.add(weights[l]);
                List<LoraWeights> group = new ArrayList<>();
                for (int m = 0; m < n; m++) {
                    LoraWeights lw = LoraWeights.empty(maxBatch);
                    for (int s = 0; s < maxBatch; s++) {
                        lw.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, RANK, shape.in(),
                                GpuChecks.random(rng, RANK * shape.in(), 0.05)));
                        lw.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, shape.outs()[m], RANK,
                                GpuChecks.random(rng, shape.outs()[m] * RANK, 0.05)));
                        lw.rank()[s] = RANK;
                        lw.scale()[s] = 2f;
                        owned.add(lw.a()[s]);
                        owned.add(lw.b()[s]);
                    }
                    group.add(lw);
                }
                groups.add(group);
            }
        }

        /** µs per layer of the GEMMs alone on a batch of rows x. */
        double gemmMicros(float[] x, int batch) {
            return time(x, batch, null);
        }

        /** µs per layer of GEMM + LoRA ({@link CudaBackend#matmulLora}, the path this backend's switches choose). */
        double loraMicros(float[] x, int batch, Segments seg) {
            return time(x, batch, seg);
        }

        private double time(float[] xValues, int batch, Segments seg) {
            Tensor x = gpu.allocate(batch, shape.in());
            Tensor y = gpu.allocate(batch, shape.total());
            Tensor v = gpu.allocate(batch, shape.outs().length * RANK);
            gpu.upload(xValues, x);
            double micros = graphMicros(gpu, () -> {
                for (int l = 0; l < LAYERS; l++) {
                    if (seg == null) {
                        gpu.matmul(x, weights[l], null, y);
                    } else {
                        gpu.matmulLora(x, weights[l], null, y, groups.get(l), seg, v, cols);
                    }
                }
            });
            gpu.free(x);
            gpu.free(y);
            gpu.free(v);
            return micros;
        }

        void free() {
            for (Tensor t : owned) {
                gpu.free(t);
            }
        }
    }

    /** Median device time of {@code layers} (one pass over the {@value #LAYERS} layers) per layer, in µs. */
    private static double graphMicros(CudaBackend gpu, Runnable layers) {
        layers.run();
        try (CudaBackend.CudaGraph g = gpu.capture(layers)) {
            for (int i = 0; i < 5; i++) {
                g.launch();
            }
            float[] t = new float[REPS];
            for (int i = 0; i < REPS; i++) {
                t[i] = gpu.timeMillis(g::launch);
            }
            Arrays.sort(t);
            return t[REPS / 2] * 1e3 / LAYERS;
        }
    }
}
