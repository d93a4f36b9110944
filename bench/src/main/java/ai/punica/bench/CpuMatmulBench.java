package ai.punica.bench;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.cpu.CpuBackend;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * {@code out[rows, out] = x[rows, in] · Wᵀ} on the CPU backend with weights in native memory.
 * Shapes: Llama-7B/8B attention projection (4096 × 4096), MLP up (11008 × 4096) and down (4096 × 11008).
 * rows 1 is one decode step of one sequence (memory-bound), 16 a decode batch, 128 a prefill chunk.
 *
 * <p>Each invocation uses the next of several weight copies whose total exceeds the L3 cache, so decode
 * numbers are from DRAM as in a real model (one 4096² bf16 matrix alone is 32 MiB, about this L3).
 */
public class CpuMatmulBench extends CpuJmhBench {

    /** Weight bytes cycled through per benchmark: well above L3. */
    private static final long WORKING_SET_BYTES = 256L << 20;

    @Param({"4096x4096", "11008x4096", "4096x11008"})
    public String shape;

    @Param({"1", "16", "128"})
    public int rows;

    @Param({"BF16"})
    public DType dtype;

    @Param({"true"})
    public boolean vector;

    private CpuBackend backend;
    private Arena arena;
    private Tensor[] weights;
    private Tensor x;
    private Tensor out;
    private int next;

    @Setup(Level.Trial)
    public void setUp() {
        String[] dims = shape.split("x");
        int outFeatures = Integer.parseInt(dims[0]);
        int inFeatures = Integer.parseInt(dims[1]);
        backend = new CpuBackend(CpuBackend.Options.defaults().withVector(vector));
        arena = Arena.ofShared();
        long bytes = (long) outFeatures * inFeatures * dtype.byteSize();
        int copies = (int) Math.max(2, (WORKING_SET_BYTES + bytes - 1) / bytes);
        SplittableRandom random = new SplittableRandom(42);
        weights = new Tensor[copies];
        for (int i = 0; i < copies; i++) {
            weights[i] = backend.loadWeight(BenchWeights.random("w" + i, dtype, outFeatures, inFeatures, 0.05, random, arena));
        }
        x = backend.allocate(rows, inFeatures);
        backend.upload(BenchWeights.random(rows * inFeatures, random), x);
        out = backend.allocate(rows, outFeatures);
    }

    @Benchmark
    public void matmul() {
        Tensor w = weights[next];
        next = (next + 1) % weights.length;
        backend.matmul(x, w, null, out);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        backend.close();
        arena.close();
    }
}
