package ai.punica.engine;

import ai.punica.backend.DeviceMemory;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.util.Locale;

/**
 * How much device memory the KV cache gets when the backend has a device of its own (vLLM's
 * {@code gpu_memory_utilization}): the engine may use {@code utilization × total}; of that, what the weights
 * and activations already hold is gone, and room is kept for every adapter slot filled at the largest rank
 * and for scratch buffers that grow later (sampling rows, attention splits, step graphs). The rest is KV.
 *
 * <pre>
 *  total ─┬─ (1 − utilization)·total            left to others
 *         ├─ used now                            weights, activations, runtime
 *         ├─ slots · adapterBytes(maxRank)       adapters, loaded on demand
 *         ├─ scratch                             maxRunning · vocab · 4 + {@value #FIXED_SCRATCH_MIB} MiB
 *         └─ KV cache                            what is left
 * </pre>
 */
public final class KvCacheSizing {
    /** Scratch that does not scale with the batch: cuBLAS, attention splits, graph index buffers. */
    static final long FIXED_SCRATCH_MIB = 512;

    private KvCacheSizing() {
    }

    /** Bytes of one adapter slot: A and B of every projection of every layer at {@code rank}, 2 bytes each. */
    public static long adapterSlotBytes(ModelConfig config, int rank) {
        long perLayer = 0;
        for (Projection p : Projection.values()) {
            perLayer += (long) rank * (p.inFeatures(config) + p.outFeatures(config));
        }
        return perLayer * config.numLayers() * 2;
    }

    /**
     * KV-cache bytes for an engine on a device with {@code memory} (read after the model was loaded).
     *
     * @throws IllegalStateException naming every term when nothing would be left for the KV cache
     */
    public static long kvCacheBytes(DeviceMemory memory, double utilization, ModelConfig model, EngineConfig engine) {
        if (!(utilization > 0 && utilization <= 1)) {
            throw new IllegalArgumentException("GPU memory utilization " + utilization + " is not in (0, 1]");
        }
        long allowed = (long) (utilization * memory.total());
        long adapters = engine.loraSlots() * adapterSlotBytes(model, engine.maxLoraRank());
        long scratch = (long) engine.maxRunning() * model.vocabSize() * 4 + (FIXED_SCRATCH_MIB << 20);
        long kv = allowed - memory.used() - adapters - scratch;
        if (kv < 64L << 20) {
            throw new IllegalStateException(String.format(Locale.ROOT,
                    "GPU memory: %.2f GiB total, %.0f%% allowed (%.2f GiB); %.2f GiB already used (weights, "
                            + "activations), %.2f GiB kept for %d adapter slots of rank %d, %.2f GiB of scratch: "
                            + "%.2f GiB left for the KV cache. Raise the memory utilization, or lower --lora-slots, "
                            + "--max-lora-rank or --max-running.",
                    gib(memory.total()), 100 * utilization, gib(allowed), gib(memory.used()), gib(adapters),
                    engine.loraSlots(), engine.maxLoraRank(), gib(scratch), gib(kv)));
        }
        return kv;
    }

    private static double gib(long bytes) {
        return bytes / (double) (1L << 30);
    }
}
