package ai.punica.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.LoraAdapter;
import ai.punica.lora.LoraAdapterConfig;
import ai.punica.model.Checkpoint;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import ai.punica.tokenizer.Tokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The benchmark model writer: what it writes is read back by the project's own loaders (config.json, the
 * safetensors checkpoint, the tokenizer, PEFT adapters) and served by the engine.
 */
class BenchCheckpointTest {
    @TempDir
    Path dir;

    @Test
    void theTinyShapeWritesAModelAndAdaptersTheEngineServes() throws Exception {
        Path model = dir.resolve("model");
        long bytes = BenchCheckpoint.write(BenchCheckpoint.Shape.TINY, model, Fixtures.root(), 5);
        ModelConfig config = ModelConfig.load(model.resolve("config.json"));
        assertThat(config.hiddenSize()).isEqualTo(64);
        assertThat(Files.size(model.resolve(Checkpoint.SINGLE_FILE))).isGreaterThan(bytes);
        RandomWeights expected = new RandomWeights(config, 5);
        try (Checkpoint checkpoint = Checkpoint.open(model)) {
            assertThat(checkpoint.names()).containsExactlyInAnyOrderElementsOf(expected.tensorNames());
            for (String name : List.of("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight",
                    "model.norm.weight")) {
                TensorData read = checkpoint.get(name);
                TensorData made = expected.get(name);
                assertThat(read.dtype()).isEqualTo(DType.BF16);
                assertThat(read.shape()).isEqualTo(made.shape());
                assertThat(read.toFloatArray()).as(name).containsExactly(made.toFloatArray());
            }
        }
        Tokenizer tokenizer = Tokenizer.load(model);
        assertThat(tokenizer.vocabSize()).isEqualTo(config.vocabSize());

        RandomAdapters adapters = new RandomAdapters(8, 16, RandomAdapters.parseTargets("q_proj,v_proj,down_proj"));
        List<Path> dirs = adapters.write(config, dir.resolve("adapters"), "a", 3, 2, 5);
        assertThat(dirs).extracting(p -> p.getFileName().toString()).containsExactly("a000", "a001", "a002");
        assertThat(Files.isSameFile(dirs.get(2).resolve(LoraAdapter.WEIGHTS_FILE),
                dirs.get(0).resolve(LoraAdapter.WEIGHTS_FILE))).as("adapter 2 hard-links adapter 0's weights").isTrue();
        assertThat(Files.isSameFile(dirs.get(1).resolve(LoraAdapter.WEIGHTS_FILE),
                dirs.get(0).resolve(LoraAdapter.WEIGHTS_FILE))).isFalse();
        LoraAdapterConfig adapterConfig = LoraAdapterConfig.load(dirs.get(1).resolve(LoraAdapter.CONFIG_FILE));
        assertThat(adapterConfig.rank()).isEqualTo(8);
        assertThat(adapterConfig.targets()).containsExactlyInAnyOrder(Projection.Q_PROJ, Projection.V_PROJ,
                Projection.DOWN_PROJ);
        assertThat(adapters.weightBytes(config)).isEqualTo(Files.size(dirs.get(1).resolve(LoraAdapter.WEIGHTS_FILE))
                - headerBytes(dirs.get(1).resolve(LoraAdapter.WEIGHTS_FILE)));

        Map<String, Path> named = new LinkedHashMap<>();
        dirs.forEach(d -> named.put(d.getFileName().toString(), d));
        try (EngineBuilder.Runtime runtime = new EngineBuilder().model(model).modelName("tiny").backend("cpu")
                .config(new EngineConfig(64, 4, 16, 16, 8L << 20, 0, 3, 8, 64L << 20)).adapters(named).build()) {
            SamplingParams params = SamplingParams.builder().temperature(0).maxTokens(5).ignoreEos(true).build();
            int[] prompt = tokenizer.encode("red apple stone", true);
            Completion base = runtime.engine().generate(new GenerationRequest("b", null, prompt, params)).join();
            Completion adapted = runtime.engine().generate(new GenerationRequest("a", "a001", prompt, params)).join();
            assertThat(base.completionTokens()).isEqualTo(5);
            assertThat(adapted.completionTokens()).isEqualTo(5);
        }
    }

    private static long headerBytes(Path safetensors) throws java.io.IOException {
        try (var in = Files.newInputStream(safetensors)) {
            byte[] b = in.readNBytes(8);
            return 8 + java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        }
    }

    @Test
    void namedShapesParseAndUnknownOnesAreNamed() {
        assertThat(BenchCheckpoint.Shape.of("llama-2-7b").config().numKvHeads()).isEqualTo(32);
        assertThat(BenchCheckpoint.Shape.of("llama-3-8b").config().vocabSize()).isEqualTo(128256);
        assertThat(BenchCheckpoint.Shape.of("mistral-7b").config().modelType()).isEqualTo("mistral");
        assertThat(RandomAdapters.allProjections(16).weightBytes(BenchCheckpoint.Shape.LLAMA_2_7B.config()))
                .as("a rank-16 adapter on all seven projections of Llama-2-7B").isEqualTo(79_953_920L);
        assertThatThrownBy(() -> BenchCheckpoint.Shape.of("gpt-5")).hasMessageContaining("unknown model shape 'gpt-5'")
                .hasMessageContaining("llama-2-7b, llama-2-13b, llama-2-70b, llama-3-8b, mistral-7b, tiny");
        assertThatThrownBy(() -> RandomAdapters.parseTargets("q_proj,lm_head"))
                .hasMessageContaining("target module 'lm_head'");
    }
}
