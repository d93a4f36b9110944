package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.backend.TensorData;
import ai.punica.model.Checkpoint;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.ModelFormatException;
import ai.punica.model.WeightSource;
import org.junit.jupiter.api.Test;

/** What a failed build leaves behind: nothing. */
class EngineBuilderTest {

    @Test
    void aFailureAfterTheWeightsAreUploadedClosesEverythingBuiltSoFar() {
        int before = LeakCheckingBackend.made.size();
        // A KV budget that holds no page fails in the engine, after the weights are on the backend.
        EngineBuilder builder = new EngineBuilder().model(Fixtures.model()).backend("cpu-leakcheck")
                .config(EngineConfig.builder().kvCacheBytes(1).build());
        assertThatThrownBy(builder::build).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("KV cache budget of 1 bytes holds no page");
        assertThat(LeakCheckingBackend.made).hasSize(before + 1);
        LeakCheckingBackend.Counts counts = LeakCheckingBackend.made.get(before);
        assertThat(counts.closed).as("backend closed").isTrue();
        assertThat(counts.liveAtClose).as("tensors still live when the backend was closed").isZero();
    }

    @Test
    void aWeightMissingHalfwayFreesTheWeightsAlreadyUploaded() {
        ModelConfig config = ModelConfig.load(Fixtures.model().resolve("config.json"));
        String missing = "model.layers." + (config.numLayers() - 1) + ".mlp.down_proj.weight";
        int before = LeakCheckingBackend.made.size();
        try (Checkpoint checkpoint = Checkpoint.open(Fixtures.model());
             Backend backend = Backends.create("cpu-leakcheck")) {
            WeightSource withoutOne = new WeightSource() {
                @Override
                public TensorData get(String name) {
                    if (name.equals(missing)) {
                        throw new ModelFormatException("no tensor " + name);
                    }
                    return checkpoint.get(name);
                }

                @Override
                public boolean contains(String name) {
                    return !name.equals(missing) && checkpoint.contains(name);
                }
            };
            assertThatThrownBy(() -> LlamaModel.load(config, withoutOne, backend, 64, 8, 2, 16))
                    .isInstanceOf(ModelFormatException.class).hasMessageContaining(missing);
            assertThat(LeakCheckingBackend.made.get(before).liveTensors.get()).as("tensors left on the backend")
                    .isZero();
        }
    }
}
