package ai.punica.parallel;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.model.ModelConfig;
import ai.punica.model.ModelHarness;
import ai.punica.model.SafeTensorsWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A random checkpoint of a shape the fixture lacks: 4 KV heads (split, not replicated, over 2 and 4 ranks),
 * q|k|v biases (Qwen2's, split with their rows) and lm_head tied to the embeddings (replicated). Sharded logits equal
 * the whole model's on the CPU backend within the fixture's tolerance.
 */
class RandomCheckpointTensorParallelTest {

    private static final String CONFIG = """
            {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300,
             "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8,
             "num_key_value_heads": 4, "head_dim": 16, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
             "rope_theta": 10000.0, "tie_word_embeddings": true,
             "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
            """;

    @ParameterizedTest
    @ValueSource(ints = {2, 4})
    void shardedLogitsEqualTheWholeModels(int ranks, @TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("config.json"), CONFIG);
        ModelConfig config = ModelConfig.load(dir.resolve("config.json"));
        assertThat(config.attentionBias()).isTrue();
        assertThat(config.weightShapes()).containsKey("model.layers.0.self_attn.k_proj.bias");
        SafeTensorsWriter writer = new SafeTensorsWriter();
        Random rnd = new Random(1600 + ranks);
        config.weightShapes().forEach((name, shape) -> {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            float[] v = new float[(int) n];
            boolean norm = name.endsWith("layernorm.weight") || name.equals("model.norm.weight");
            for (int i = 0; i < v.length; i++) {
                v[i] = norm ? 1f + 0.1f * (float) rnd.nextGaussian() : 0.08f * (float) rnd.nextGaussian();
            }
            writer.add(name, DType.BF16, shape, v);
        });
        writer.write(dir.resolve("model.safetensors"));

        List<ModelHarness.Input> inputs = List.of(
                new ModelHarness.Input(new int[] {1, 17, 250, 3, 99, 42, 7}, null),
                new ModelHarness.Input(new int[] {1, 5}, null),
                new ModelHarness.Input(new int[] {1, 299, 298, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 33, 44, 55, 66, 77}, null));
        float[][] whole;
        try (ModelHarness h = new ModelHarness(dir, Map.of(), "cpu")) {
            whole = h.lastLogits(inputs);
        }
        float[][] sharded;
        try (ModelHarness h = new ModelHarness(dir, Map.of(), "cpu", ranks)) {
            sharded = h.lastLogits(inputs);
        }
        for (int i = 0; i < inputs.size(); i++) {
            float min = Float.MAX_VALUE;
            float max = -Float.MAX_VALUE;
            for (float v : whole[i]) {
                min = Math.min(min, v);
                max = Math.max(max, v);
            }
            assertThat(max - min).as("logits spread enough for a wrong shard to show").isGreaterThan(0.5f);
            TensorParallelLogitsTest.assertClose(sharded[i], whole[i], "TP=" + ranks + " input " + i);
        }
    }
}
