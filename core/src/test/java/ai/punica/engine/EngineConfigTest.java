package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class EngineConfigTest {

    @Test
    void builderStartsFromTheDefaultsAndChangesOnlyWhatIsSet() {
        EngineConfig c = EngineConfig.builder().loraSlots(3).maxModelLen(512).build();
        EngineConfig d = EngineConfig.defaults();
        assertThat(c).isEqualTo(new EngineConfig(d.maxBatchTokens(), d.maxRunning(), d.maxWaiting(), d.pageSize(),
                d.kvCacheBytes(), 512, 3, d.maxLoraRank(), d.hostAdapterBytes()));
        assertThat(c.toBuilder().build()).isEqualTo(c);
    }

    @Test
    void anOptionOutOfRangeIsRefusedByName() {
        assertThatThrownBy(() -> EngineConfig.builder().pageSize(0).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessage("pageSize is 0; it must be at least 1");
        assertThatThrownBy(() -> EngineConfig.builder().maxWaiting(-1).build())
                .hasMessage("maxWaiting is -1; it must be at least 0");
        assertThatThrownBy(() -> EngineConfig.builder().maxBatchTokens(8).maxRunning(16).build())
                .hasMessageContaining("maxRunning 16 exceeds maxBatchTokens 8");
    }

    @Test
    void batchInvarianceIsOffByDefaultAndKeptByTheBuilder() {
        assertThat(EngineConfig.defaults().batchInvariant()).isFalse();
        assertThat(EngineConfig.deviceDefaults().batchInvariant()).isFalse();
        EngineConfig on = EngineConfig.builder().batchInvariant(true).maxRunning(8).build();
        assertThat(on.batchInvariant()).isTrue();
        assertThat(on.toBuilder().loraSlots(2).build().batchInvariant()).isTrue();
        assertThat(on.toBuilder().batchInvariant(false).build()).isEqualTo(EngineConfig.builder().maxRunning(8).build());
        // The nine-option constructor (older callers) means "not invariant".
        EngineConfig d = EngineConfig.defaults();
        assertThat(new EngineConfig(d.maxBatchTokens(), d.maxRunning(), d.maxWaiting(), d.pageSize(), d.kvCacheBytes(),
                d.maxModelLen(), d.loraSlots(), d.maxLoraRank(), d.hostAdapterBytes())).isEqualTo(d);
    }
}
