package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import java.util.List;

/** config.json files as the published models ship them (meta-llama, mistralai, Qwen on the HF Hub). */
class ModelConfigTest {

    static final String LLAMA_2_7B = """
            {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
             "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008,
             "max_position_embeddings": 4096, "model_type": "llama", "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
             "rope_scaling": null, "tie_word_embeddings": false, "torch_dtype": "float16",
             "transformers_version": "4.31.0.dev0", "use_cache": true, "vocab_size": 32000}
            """;

    static final String LLAMA_3_1_8B_INSTRUCT = """
            {"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
             "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
             "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
             "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
             "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
             "rms_norm_eps": 1e-05,
             "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192, "rope_type": "llama3"},
             "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
             "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 128256}
            """;

    static final String MISTRAL_7B_V01 = """
            {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
             "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
             "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
             "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
             "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000}
            """;

    static final String QWEN2_5_0_5B = """
            {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
             "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
             "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
             "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
             "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
             "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true,
             "use_sliding_window": false, "vocab_size": 151936}
            """;

    @TempDir
    Path dir;

    @Test
    void parsesLlama2() {
        ModelConfig c = ModelConfig.parse(LLAMA_2_7B, "llama2/config.json");
        assertThat(c).isEqualTo(new ModelConfig("llama", 32000, 4096, 11008, 32, 32, 32, 128, 4096, 1e-5f, 10000.0,
                null, false, false, false, 0, 1, List.of(2), "float16"));
        assertThat(c.kvGroupSize()).isEqualTo(1);
    }

    @Test
    void parsesLlama31WithLlama3RopeScalingAndSeveralEosTokens() {
        ModelConfig c = ModelConfig.parse(LLAMA_3_1_8B_INSTRUCT, "config.json");
        assertThat(c.numKvHeads()).isEqualTo(8);
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(c.kvGroupSize()).isEqualTo(4);
        assertThat(c.ropeTheta()).isEqualTo(500000.0);
        assertThat(c.ropeScaling()).isEqualTo(RopeScaling.llama3(8.0, 1.0, 4.0, 8192));
        assertThat(c.maxPositionEmbeddings()).isEqualTo(131072);
        assertThat(c.bosTokenId()).isEqualTo(128000);
        assertThat(c.eosTokenIds()).containsExactly(128001, 128008, 128009);
        assertThat(c.torchDtype()).isEqualTo("bfloat16");
    }

    @Test
    void transformers5RopeParametersCarryTheThetaAndMeanTheSameAsRopeScaling() {
        String v5 = LLAMA_3_1_8B_INSTRUCT
                .replace("\"rope_scaling\"", "\"rope_parameters\"")
                .replace("\"rope_type\": \"llama3\"}", "\"rope_type\": \"llama3\", \"rope_theta\": 500000.0}")
                .replace("\"rope_theta\": 500000.0, \"tie", "\"tie")
                .replace("\"torch_dtype\"", "\"dtype\"");
        assertThat(v5).doesNotContain("\"rope_theta\": 500000.0, \"tie");
        assertThat(ModelConfig.parse(v5, "v5.json")).isEqualTo(ModelConfig.parse(LLAMA_3_1_8B_INSTRUCT, "v4.json"));
    }

    @Test
    void parsesMistralWithSlidingWindowAndItsNullForm() {
        ModelConfig v01 = ModelConfig.parse(MISTRAL_7B_V01, "config.json");
        assertThat(v01.modelType()).isEqualTo("mistral");
        assertThat(v01.slidingWindow()).isEqualTo(4096);
        assertThat(v01.numKvHeads()).isEqualTo(8);
        assertThat(v01.attentionBias()).isFalse();
        // Mistral-7B-Instruct-v0.2 and later: full attention, larger theta.
        ModelConfig v02 = ModelConfig.parse(MISTRAL_7B_V01.replace("\"sliding_window\": 4096", "\"sliding_window\": null")
                .replace("\"rope_theta\": 10000.0", "\"rope_theta\": 1000000.0"), "config.json");
        assertThat(v02.slidingWindow()).isZero();
        assertThat(v02.ropeTheta()).isEqualTo(1e6);
    }

    @Test
    void parsesQwen2WithImpliedQkvBiasAndTiedEmbeddings() {
        ModelConfig c = ModelConfig.parse(QWEN2_5_0_5B, "config.json");
        assertThat(c.attentionBias()).isTrue();
        assertThat(c.mlpBias()).isFalse();
        assertThat(c.tieWordEmbeddings()).isTrue();
        assertThat(c.headDim()).isEqualTo(64);
        assertThat(c.numKvHeads()).isEqualTo(2);
        assertThat(c.slidingWindow()).isZero();
        assertThat(c.rmsNormEps()).isEqualTo(1e-6f);
        assertThat(c.eosTokenIds()).containsExactly(151643);
        assertThat(c.weightShapes()).containsKey("model.layers.0.self_attn.k_proj.bias")
                .doesNotContainKey("model.layers.0.self_attn.o_proj.bias")
                .doesNotContainKey("lm_head.weight");
        assertThat(c.weightShapes().get("model.layers.23.self_attn.k_proj.bias")).containsExactly(128);
    }

    @Test
    void absentKeysTakeLlamaConfigDefaults() {
        ModelConfig c = ModelConfig.parse("""
                {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 172,
                 "num_hidden_layers": 2, "num_attention_heads": 4}
                """, "config.json");
        assertThat(c).isEqualTo(new ModelConfig("llama", 256, 64, 172, 2, 4, 4, 16, 2048, 1e-6f, 10000.0, null, false,
                false, false, 0, -1, List.of(), "float32"));
    }

    @Test
    void explicitHeadDimWinsOverHiddenOverHeads() {
        ModelConfig c = ModelConfig.parse(MISTRAL_7B_V01.replace("\"hidden_size\": 4096",
                "\"hidden_size\": 5120, \"head_dim\": 128"), "config.json");
        assertThat(c.headDim()).isEqualTo(128);
        assertThat(Projection.Q_PROJ.outFeatures(c)).isEqualTo(32 * 128);
        assertThat(Projection.O_PROJ.outFeatures(c)).isEqualTo(5120);
    }

    @Test
    void legacyTypeKeyAndLinearScalingAreRead() {
        ModelConfig c = ModelConfig.parse(LLAMA_2_7B.replace("\"rope_scaling\": null",
                "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}"), "config.json");
        assertThat(c.ropeScaling()).isEqualTo(RopeScaling.linear(4.0));
        ModelConfig plain = ModelConfig.parse(LLAMA_2_7B.replace("\"rope_scaling\": null",
                "\"rope_scaling\": {\"rope_type\": \"default\"}"), "config.json");
        assertThat(plain.ropeScaling()).isNull();
    }

    @Test
    void yarnScalingKeepsItsOptionalFields() {
        ModelConfig c = ModelConfig.parse(QWEN2_5_0_5B.replace("\"rope_theta\"",
                "\"rope_scaling\": {\"factor\": 4.0, \"original_max_position_embeddings\": 32768, \"type\": \"yarn\"}, "
                        + "\"rope_theta\""), "config.json");
        assertThat(c.ropeScaling()).isEqualTo(new RopeScaling("yarn", 4.0, 0, 0, 32768, 32, 1, null, null, null, true));
    }

    @Test
    void unsupportedModelsAndFeaturesAreRejectedSayingWhatIsSupported() {
        assertRejected(LLAMA_2_7B.replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt2\""),
                "field 'model_type' is 'gpt2'; Punica-J serves the Llama family only: llama, mistral, qwen2");
        assertRejected(LLAMA_2_7B.replace("\"LlamaForCausalLM\"", "\"LlamaForSequenceClassification\""),
                "field 'architectures' is [LlamaForSequenceClassification]");
        assertRejected(LLAMA_2_7B.replace("\"silu\"", "\"gelu\""), "field 'hidden_act' is 'gelu'");
        assertRejected(LLAMA_2_7B.replace("\"rope_scaling\": null",
                "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}"),
                "field 'rope_scaling.type' is 'dynamic'; supported rope types: default, linear, llama3, yarn");
        assertRejected(LLAMA_3_1_8B_INSTRUCT.replace("\"attention_bias\": false", "\"attention_bias\": true"),
                "field 'attention_bias' is true");
        assertRejected(QWEN2_5_0_5B.replace("\"use_sliding_window\": false", "\"use_sliding_window\": true"),
                "field 'use_sliding_window' is true");
        assertRejected(LLAMA_2_7B.replace("\"use_cache\": true",
                "\"quantization_config\": {\"quant_method\": \"awq\"}"), "field 'quantization_config' is present");
    }

    @Test
    void badValuesNameTheFieldAndTheValue() {
        assertRejected(LLAMA_2_7B.replace("\"hidden_size\": 4096", "\"hidden_size\": \"big\""),
                "field 'hidden_size' is \"big\"; expected an integer");
        assertRejected(LLAMA_2_7B.replace("\"hidden_size\": 4096,", ""), "field 'hidden_size' is missing");
        assertRejected(LLAMA_2_7B.replace("\"num_key_value_heads\": 32", "\"num_key_value_heads\": 5"),
                "field 'num_key_value_heads' is 5, which does not divide num_attention_heads 32");
        assertRejected(LLAMA_2_7B.replace("\"num_hidden_layers\": 32", "\"num_hidden_layers\": 0"),
                "field 'num_hidden_layers' is 0; expected a positive integer");
        assertRejected(LLAMA_3_1_8B_INSTRUCT.replace("\"low_freq_factor\": 1.0, ", ""),
                "field 'rope_scaling.low_freq_factor' is missing");
        assertRejected(LLAMA_2_7B.replace("\"vocab_size\": 32000}", "\"vocab_size\": 32000"),
                "not valid JSON");
    }

    private static void assertRejected(String json, String expected) {
        assertThatThrownBy(() -> ModelConfig.parse(json, "models/x/config.json"))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageStartingWith("models/x/config.json: ")
                .hasMessageContaining(expected);
    }

    @Test
    void loadNamesTheFileItCouldNotRead() throws IOException {
        Path missing = dir.resolve("config.json");
        assertThatThrownBy(() -> ModelConfig.load(missing))
                .isInstanceOf(ModelFormatException.class)
                .hasMessage(missing + ": file not found");
        Files.writeString(missing, LLAMA_2_7B);
        assertThat(ModelConfig.load(missing).vocabSize()).isEqualTo(32000);
    }

    @Test
    void weightShapesListEveryTensorOfALlamaCheckpoint() {
        ModelConfig c = ModelConfig.parse(LLAMA_3_1_8B_INSTRUCT, "config.json");
        var shapes = c.weightShapes();
        assertThat(shapes).hasSize(1 + 32 * 9 + 2);
        assertThat(shapes.get("model.embed_tokens.weight")).containsExactly(128256, 4096);
        assertThat(shapes.get("model.layers.31.self_attn.k_proj.weight")).containsExactly(1024, 4096);
        assertThat(shapes.get("model.layers.0.mlp.down_proj.weight")).containsExactly(4096, 14336);
        assertThat(shapes.get("lm_head.weight")).containsExactly(128256, 4096);
    }
}
