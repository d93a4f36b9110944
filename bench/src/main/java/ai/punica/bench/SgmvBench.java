package ai.punica.bench;

import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
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
 * The LoRA add-on of one 4096 → 4096 projection for a batch: SGMV shrink {@code v = x · Aᵀ} then expand
 * {@code y += s · v · Bᵀ}, bf16 adapters. {@code distinct}: every row has its own adapter (batch
 * segments of one row, the worst case for weight traffic); otherwise one adapter for all rows.
 * Compare with {@link CpuMatmulBench} 4096x4096 at the same rows: Punica's point is that this stays small.
 */
public class SgmvBench extends CpuJmhBench {

    private static final int HIDDEN = 4096;

    @Param({"8", "16", "64"})
    public int rank;

    @Param({"1", "16", "64"})
    public int batch;

    @Param({"true", "false"})
    public boolean distinct;

    private CpuBackend backend;
    private Arena arena;
    private LoraWeights lora;
    private Segments segments;
    private Tensor x;
    private Tensor v;
    private Tensor y;

    @Setup(Level.Trial)
    public void setUp() {
        backend = new CpuBackend();
        arena = Arena.ofShared();
        SplittableRandom random = new SplittableRandom(7);
        int adapters = distinct ? batch : 1;
        lora = LoraWeights.empty(adapters);
        for (int slot = 0; slot < adapters; slot++) {
            lora.a()[slot] = backend.loadWeight(BenchWeights.random("A" + slot, DType.BF16, rank, HIDDEN, 0.05, random, arena));
            lora.b()[slot] = backend.loadWeight(BenchWeights.random("B" + slot, DType.BF16, HIDDEN, rank, 0.05, random, arena));
            lora.rank()[slot] = rank;
            lora.scale()[slot] = 2f;
        }
        if (distinct) {
            int[] starts = new int[batch + 1];
            int[] slots = new int[batch];
            for (int i = 0; i < batch; i++) {
                starts[i + 1] = i + 1;
                slots[i] = i;
            }
            segments = new Segments(starts, slots);
        } else {
            segments = new Segments(new int[] {0, batch}, new int[] {0});
        }
        x = backend.allocate(batch, HIDDEN);
        backend.upload(BenchWeights.random(batch * HIDDEN, random), x);
        v = backend.allocate(batch, rank);
        y = backend.allocate(batch, HIDDEN);
        backend.upload(BenchWeights.random(batch * HIDDEN, random), y);
    }

    @Benchmark
    public void shrinkExpand() {
        backend.sgmvShrink(x, lora, segments, v);
        backend.sgmvExpand(v, lora, segments, y, 0);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        backend.close();
        arena.close();
    }
}
