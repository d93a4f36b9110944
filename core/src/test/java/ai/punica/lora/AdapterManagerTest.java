package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.Backend;
import ai.punica.backend.cpu.CpuBackend;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.model.Checkpoint;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import org.junit.jupiter.api.Test;

/** The adapter tiers on their own, with loads that finish at once (a loader running tasks inline). */
class AdapterManagerTest {

    /** Asks until the adapter is in a slot; a load that never completes fails the test, not hangs it. */
    private static int acquireWithin(AdapterManager adapters, String name, int attempts) {
        for (int i = 0; i < attempts; i++) {
            Acquisition a = adapters.acquire(name);
            if (a instanceof Acquisition.Ready(int slot)) {
                return slot;
            }
            assertThat(a).as("acquire %s", name).isNotInstanceOf(Acquisition.Failed.class);
        }
        throw new AssertionError(name + " not in a slot after " + attempts + " attempts");
    }

    @Test
    void anAdapterDroppedFromHostMemoryIsReadAgainWhenAskedForAgain() {
        ModelConfig config = ModelConfig.load(Fixtures.model().resolve("config.json"));
        try (Backend backend = new CpuBackend();
             Checkpoint checkpoint = Checkpoint.open(Fixtures.model());
             LlamaModel model = LlamaModel.load(config, checkpoint, backend, 16, 4, 1, 64);
             // one slot, a host budget below any adapter, loads that complete inside acquire()
             AdapterManager adapters = new AdapterManager(model, 1, Runnable::run)) {
            adapters.register("upper", Fixtures.adapter("upper"));
            adapters.register("reverse", Fixtures.adapter("reverse"));
            for (String name : new String[] {"upper", "reverse", "upper", "reverse", "upper"}) {
                int slot = acquireWithin(adapters, name, 3);
                assertThat(adapters.residentAdapters()).containsOnlyKeys(name);
                assertThat(adapters.hostCached()).containsExactly(name);
                assertThat(model.loraWeights(0, Projection.Q_PROJ).present(slot)).isTrue();
                boolean adaptsMlp = name.equals("reverse"); // upper adapts attention only
                assertThat(model.loraWeights(0, Projection.GATE_PROJ).present(slot)).isEqualTo(adaptsMlp);
                adapters.release(slot);
            }
            assertThat(adapters.loadCount()).isEqualTo(5);
            assertThat(adapters.pinnedSlots()).isZero();
        }
    }
}
