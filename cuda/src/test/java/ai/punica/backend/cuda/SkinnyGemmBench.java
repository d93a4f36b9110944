package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The GEMMs of a Llama-2-7B decode step on one GPU: the skinny kernel (gemm.cu) against cuBLAS, both through
 * {@link CudaBackend#matmul} (cuBLAS by {@code setSkinnyGemm(false)}), at 1 to 64 rows. Each timing is a CUDA
 * graph of {@code CALLS} matmuls that rotate over copies of the weight (≥ 256 MB in all, so L2 cannot serve
 * them), median of {@code RUNS} launches divided by {@code CALLS}. GB/s counts the weight bytes (x and out are
 * under 2% of the traffic at these sizes); % is of the peak read bandwidth given as the first argument.
 * Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.SkinnyGemmBench [PEAK_GB/s]}.
 */
public final class SkinnyGemmBench {
    private static final int RUNS = 30;
    private static final int CALLS = 24;
    private static final long ROTATION_BYTES = 256L << 20;
    private static final int[] ROWS = {1, 4, 8, 16, 32, 64};

    private record Shape(String name, int out, int in, int perStep) {
        long bytes() {
            return 2L * out * in;
        }
    }

    /** [out, in] of each projection and how often one decode step runs it (32 layers, one lm_head). */
    private static final List<Shape> SHAPES = List.of(
            new Shape("qkv", 12288, 4096, 32),
            new Shape("o", 4096, 4096, 32),
            new Shape("gate_up", 22016, 4096, 32),
            new Shape("down", 4096, 11008, 32),
            new Shape("lm_head", 32000, 4096, 1));

    public static void main(String[] args) {
        double peak = args.length > 0 ? Double.parseDouble(args[0]) : 3058;
        try (CudaBackend gpu = new CudaBackend()) {
            System.out.println("device " + gpu.deviceDescription() + ", peak read bandwidth " + peak + " GB/s");
            SplittableRandom rng = new SplittableRandom(1);
            long maxBytes = SHAPES.stream().mapToLong(Shape::bytes).max().orElseThrow();
            MemorySegment bits = randomBf16(rng, maxBytes / 2, 0.02f);
            double[][] stepMicros = new double[2][ROWS.length];
            System.out.println("BENCH shape      rows | skinny us   GB/s     % | cublas us   GB/s     % | speedup"
                    + " | skinny vs cublas relErr");
            for (Shape s : SHAPES) {
                int copies = (int) Math.max(2, (ROTATION_BYTES + s.bytes() - 1) / s.bytes());
                List<Tensor> weights = new ArrayList<>();
                TensorData data = new TensorData(s.name(), DType.BF16, new long[] {s.out(), s.in()}, bits.asSlice(0, s.bytes()));
                for (int c = 0; c < copies; c++) {
                    weights.add(gpu.loadWeight(data));
                }
                for (int r = 0; r < ROWS.length; r++) {
                    int rows = ROWS[r];
                    Tensor x = gpu.allocate(rows, s.in());
                    gpu.upload(random(rng, rows * s.in(), 1), x);
                    Tensor out = gpu.allocate(rows, s.out());
                    float[] skinnyOut = new float[rows * s.out()];
                    float[] cublasOut = new float[rows * s.out()];
                    gpu.setSkinnyGemm(true);
                    double skinny = perCallMicros(gpu, weights, x, out);
                    gpu.download(out, skinnyOut);
                    gpu.setSkinnyGemm(false);
                    double cublas = perCallMicros(gpu, weights, x, out);
                    gpu.download(out, cublasOut);
                    gpu.setSkinnyGemm(true);
                    double skinnyGbps = s.bytes() / (skinny * 1e-6) / 1e9;
                    double cublasGbps = s.bytes() / (cublas * 1e-6) / 1e9;
                    System.out.printf("BENCH %-8s %4d | %9.1f %6.0f %5.1f | %9.1f %6.0f %5.1f | %6.2fx | %.1e%n", s.name(),
                            rows, skinny, skinnyGbps, 100 * skinnyGbps / peak, cublas, cublasGbps, 100 * cublasGbps / peak,
                            cublas / skinny, relativeError(skinnyOut, cublasOut));
                    stepMicros[0][r] += s.perStep() * skinny;
                    stepMicros[1][r] += s.perStep() * cublas;
                    gpu.free(x);
                    gpu.free(out);
                }
                for (Tensor w : weights) {
                    gpu.free(w);
                }
            }
            System.out.println("BENCH decode step GEMMs (32 layers + lm_head), ms: rows | skinny | cublas | saved");
            for (int r = 0; r < ROWS.length; r++) {
                System.out.printf("BENCH step %4d | %7.3f | %7.3f | %5.1f%%%n", ROWS[r], stepMicros[0][r] / 1e3,
                        stepMicros[1][r] / 1e3, 100 * (1 - stepMicros[0][r] / stepMicros[1][r]));
            }
        }
    }

    /** Device µs per matmul: a graph of CALLS matmuls over the rotating weight copies. */
    private static double perCallMicros(CudaBackend gpu, List<Tensor> weights, Tensor x, Tensor out) {
        Runnable calls = () -> {
            for (int i = 0; i < CALLS; i++) {
                gpu.matmul(x, weights.get(i % weights.size()), null, out);
            }
        };
        calls.run(); // scratch buffers grow outside the capture
        try (CudaBackend.CudaGraph g = gpu.capture(calls)) {
            for (int i = 0; i < 3; i++) {
                g.launch();
            }
            float[] t = new float[RUNS];
            for (int i = 0; i < RUNS; i++) {
                t[i] = gpu.timeMillis(g::launch);
            }
            Arrays.sort(t);
            return t[RUNS / 2] * 1e3 / CALLS;
        }
    }

    /** n random bf16 values in [-scale, scale), none zero, as a heap segment. */
    private static MemorySegment randomBf16(SplittableRandom rng, long n, float scale) {
        MemorySegment seg = MemorySegment.ofArray(new short[Math.toIntExact(n)]);
        for (long i = 0; i < n; i++) {
            double v = rng.nextDouble(-scale, scale);
            seg.setAtIndex(ValueLayout.JAVA_SHORT, i, DType.floatToBf16((float) (v == 0 ? scale / 3 : v)));
        }
        return seg;
    }

    private static float[] random(SplittableRandom rng, int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            double x = rng.nextDouble(-scale, scale);
            v[i] = (float) (x == 0 ? scale / 3 : x);
        }
        return v;
    }

    private static double relativeError(float[] got, float[] want) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < want.length; i++) {
            double d = got[i] - want[i];
            num += d * d;
            den += (double) want[i] * want[i];
        }
        return Math.sqrt(num / Math.max(den, 1e-30));
    }
}
