package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DeviceMemory;
import ai.punica.model.ModelConfig;
import org.junit.jupiter.api.Test;

class KvCacheSizingTest {
    private static final ModelConfig LLAMA_7B = ModelConfig.parse("""
            {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
            """, "llama-7b");
    private static final long GIB = 1L << 30;

    @Test
    void adapterSlotHoldsEveryProjectionOfEveryLayerInBf16() {
        // Per layer and rank: q, k, v, o (4096+4096 each) + gate, up (4096+11008 each) + down (11008+4096).
        long perRank = 4L * (4096 + 4096) + 3L * (4096 + 11008);
        assertThat(KvCacheSizing.adapterSlotBytes(LLAMA_7B, 16)).isEqualTo(perRank * 16 * 32 * 2);
        assertThat(KvCacheSizing.adapterSlotBytes(LLAMA_7B, 16)).isEqualTo(79_953_920L); // 80 MB, as PEFT writes it
    }

    @Test
    void kvCacheGetsWhatIsLeftOfTheAllowedShare() {
        EngineConfig engine = EngineConfig.builder().loraSlots(8).build(); // rank ≤ 64, 32 running
        DeviceMemory h100 = new DeviceMemory(80 * GIB - 14 * GIB, 80 * GIB); // 14 GiB used: weights + activations
        long kv = KvCacheSizing.kvCacheBytes(h100, 0.9, LLAMA_7B, engine);
        long expected = (long) (0.9 * 80 * GIB) - 14 * GIB - 8 * KvCacheSizing.adapterSlotBytes(LLAMA_7B, 64)
                - 32L * 32000 * 4 - (KvCacheSizing.FIXED_SCRATCH_MIB << 20);
        assertThat(kv).isEqualTo(expected);
        assertThat(kv).isBetween(55 * GIB, 56 * GIB); // 72 - 14 - 2.38 (slots) - 0.5 (scratch)
        assertThat(KvCacheSizing.kvCacheBytes(h100, 0.5, LLAMA_7B, engine)).isLessThan(kv - 30 * GIB);
    }

    @Test
    void tooLittleMemoryIsRefusedNamingEveryShare() {
        EngineConfig engine = EngineConfig.builder().loraSlots(64).build();
        DeviceMemory small = new DeviceMemory(10 * GIB, 24 * GIB);
        assertThatThrownBy(() -> KvCacheSizing.kvCacheBytes(small, 0.9, LLAMA_7B, engine))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("24.00 GiB total")
                .hasMessageContaining("14.00 GiB already used")
                .hasMessageContaining("64 adapter slots of rank 64")
                .hasMessageContaining("--lora-slots");
        assertThatThrownBy(() -> KvCacheSizing.kvCacheBytes(small, 1.5, LLAMA_7B, engine))
                .isInstanceOf(IllegalArgumentException.class);
    }
}
