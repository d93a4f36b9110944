package ai.punica.lora;

import static ai.punica.lora.PeftAdapterFiles.config;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.model.ModelFormatException;
import ai.punica.model.Projection;
import java.util.EnumSet;
import org.junit.jupiter.api.Test;

class LoraAdapterConfigTest {

    private static final String SOURCE = "adapters/upper/adapter_config.json";

    private static LoraAdapterConfig parse(String json) {
        return LoraAdapterConfig.parse(json, SOURCE);
    }

    @Test
    void readsRankAlphaAndListTargetsAsPeftWritesThem() {
        LoraAdapterConfig c = parse(config(n -> { }));
        assertThat(c.rank()).isEqualTo(8);
        assertThat(c.alpha()).isEqualTo(16.0);
        assertThat(c.useRslora()).isFalse();
        assertThat(c.targets()).containsExactly(Projection.Q_PROJ, Projection.V_PROJ);
        assertThat(c.baseModelName()).isEqualTo("tiny-llama");
        assertThat(c.scale(8, 16)).isEqualTo(2.0);
        assertThat(c.scale(0, Projection.Q_PROJ)).isEqualTo(2.0f);
        assertThat(c.adapts(5, Projection.V_PROJ)).isTrue();
        assertThat(c.adapts(5, Projection.K_PROJ)).isFalse();
    }

    @Test
    void configBuiltInCodeAdaptsItsTargetsInEveryLayer() {
        LoraAdapterConfig c = new LoraAdapterConfig(4, 8, false, EnumSet.of(Projection.O_PROJ), java.util.Map.of(),
                java.util.Map.of(), null);
        assertThat(c.adapts(0, Projection.O_PROJ)).isTrue();
        assertThat(c.adapts(11, Projection.O_PROJ)).isTrue();
        assertThat(c.adapts(0, Projection.Q_PROJ)).isFalse();
        assertThat(c.scale(2, Projection.O_PROJ)).isEqualTo(2.0f);
    }

    @Test
    void rsLoraScalesByTheSquareRootOfTheRank() {
        LoraAdapterConfig c = parse(config(n -> n.put("use_rslora", true).put("r", 16).put("lora_alpha", 8)));
        assertThat(c.scale(16, 8)).isEqualTo(2.0);
        assertThat(c.scale(3, Projection.Q_PROJ)).isEqualTo(2.0f);
    }

    @Test
    void allLinearMeansAllSevenProjections() {
        LoraAdapterConfig c = parse(config(n -> n.put("target_modules", "all-linear")));
        assertThat(c.targets()).isEqualTo(EnumSet.allOf(Projection.class));
    }

    @Test
    void regexTargetsAreFullMatchedAgainstModulePaths() {
        LoraAdapterConfig c = parse(config(n -> n.put("target_modules", ".*\\.(q_proj|down_proj)")));
        assertThat(c.targets()).containsExactly(Projection.Q_PROJ, Projection.DOWN_PROJ);
        // A regex that does not full-match ("q_proj" alone matches no whole path) selects nothing.
        assertThatThrownBy(() -> parse(config(n -> n.put("target_modules", "q_proj"))))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("selects none of the projections");
        // Layer-selective regexes are honoured per layer.
        LoraAdapterConfig firstLayer = parse(config(n -> n.put("target_modules", "model\\.layers\\.0\\..*_proj")));
        assertThat(firstLayer.adapts(0, Projection.UP_PROJ)).isTrue();
        assertThat(firstLayer.adapts(1, Projection.UP_PROJ)).isFalse();
    }

    @Test
    void missingTargetModulesFallBackToPeftsLlamaDefault() {
        LoraAdapterConfig c = parse(config(n -> n.remove("target_modules")));
        assertThat(c.targets()).containsExactly(Projection.Q_PROJ, Projection.V_PROJ);
    }

    @Test
    void rankAndAlphaPatternsOverrideSingleModules() {
        LoraAdapterConfig c = parse(config(n -> {
            n.put("target_modules", "all-linear");
            n.putObject("rank_pattern").put("model.layers.1.mlp.down_proj", 4).put("q_proj", 16);
            n.putObject("alpha_pattern").put("q_proj", 64);
        }));
        assertThat(c.rank(0, Projection.Q_PROJ)).isEqualTo(16);
        assertThat(c.rank(1, Projection.DOWN_PROJ)).isEqualTo(4);
        assertThat(c.rank(0, Projection.DOWN_PROJ)).isEqualTo(8);
        assertThat(c.rank(0, Projection.GATE_PROJ)).isEqualTo(8);
        assertThat(c.scale(0, Projection.Q_PROJ)).isEqualTo(4.0f);   // 64 / 16
        assertThat(c.scale(1, Projection.DOWN_PROJ)).isEqualTo(4.0f); // 16 / 4
        assertThat(c.scale(0, Projection.K_PROJ)).isEqualTo(2.0f);   // 16 / 8
    }

    @Test
    void layersToTransformAndExcludeModulesNarrowTheSelection() {
        LoraAdapterConfig c = parse(config(n -> {
            n.putArray("layers_to_transform").add(0).add(2);
            n.put("layers_pattern", "layers");
            n.putArray("exclude_modules").add("model.layers.2.self_attn.v_proj");
        }));
        assertThat(c.adapts(0, Projection.Q_PROJ)).isTrue();
        assertThat(c.adapts(1, Projection.Q_PROJ)).isFalse();
        assertThat(c.adapts(2, Projection.Q_PROJ)).isTrue();
        assertThat(c.adapts(2, Projection.V_PROJ)).isFalse();
        assertThat(c.adapts(0, Projection.V_PROJ)).isTrue();
    }

    @Test
    void unsupportedPeftOptionsAreRejectedNamingTheField() {
        assertRejected(config(n -> n.putArray("modules_to_save").add("lm_head")),
                "field 'modules_to_save' is [lm_head]");
        assertRejected(config(n -> n.put("use_dora", true)), "field 'use_dora' is true; DoRA adapters are not supported");
        assertRejected(config(n -> n.put("bias", "lora_only")), "field 'bias' is 'lora_only'");
        assertRejected(config(n -> n.put("fan_in_fan_out", true)), "field 'fan_in_fan_out' is true");
        assertRejected(config(n -> n.put("peft_type", "PREFIX_TUNING")),
                "field 'peft_type' is 'PREFIX_TUNING'; Punica-J serves LoRA adapters only");
        assertRejected(config(n -> n.remove("peft_type")), "field 'peft_type' is missing");
        assertRejected(config(n -> n.put("layers_pattern", "h")), "field 'layers_pattern' is \"h\"");
        assertRejected(config(n -> {
            n.put("target_modules", ".*q_proj");
            n.put("layers_to_transform", 1);
        }), "field 'layers_to_transform' is set while target_modules is a regex");
        assertRejected(config(n -> n.putArray("target_modules").add("q_proj").add("lm_head")),
                "field 'target_modules' lists 'lm_head'; LoRA on embeddings or the LM head is not supported");
        assertRejected(config(n -> n.putArray("target_modules").add("embed_tokens")),
                "field 'target_modules' lists 'embed_tokens'");
        assertRejected(config(n -> n.put("target_modules", ".*")), "which matches lm_head");
        assertRejected(config(n -> n.put("target_modules", "(unclosed")), "does not compile");
        assertRejected(config(n -> n.put("r", 0)), "field 'r' is 0");
        assertRejected(config(n -> n.putObject("rank_pattern").put("q_proj", "big")),
                "field 'rank_pattern' maps 'q_proj' to \"big\"; expected a number");
    }

    private static void assertRejected(String json, String expected) {
        assertThatThrownBy(() -> parse(json))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageStartingWith(SOURCE + ": ")
                .hasMessageContaining(expected);
    }
}
