package ai.punica.lora;

import static ai.punica.lora.PeftAdapterFiles.ALL;
import static ai.punica.lora.PeftAdapterFiles.BASE;
import static ai.punica.lora.PeftAdapterFiles.Q_V;
import static ai.punica.lora.PeftAdapterFiles.config;
import static ai.punica.lora.PeftAdapterFiles.tensors;
import static ai.punica.lora.PeftAdapterFiles.write;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.model.ModelFormatException;
import ai.punica.model.Projection;
import ai.punica.model.SafeTensorsFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LoraAdapterTest {

    @TempDir
    Path dir;

    private Path adapter(String config, Map<String, long[]> tensors) {
        return write(dir.resolve("a"), config, tensors, DType.BF16, 100);
    }

    @Test
    void loadsEveryAdaptedProjectionIntoHostMemoryWithRankAndScale() {
        Map<String, long[]> tensors = tensors(8, ALL, 0, 1, 2);
        Path path = write(dir.resolve("all"), config(n -> n.put("target_modules", "all-linear")), tensors, DType.F32, 7);
        try (LoraAdapter adapter = LoraAdapter.load("all", path, BASE)) {
            assertThat(adapter.name()).isEqualTo("all");
            assertThat(adapter.directory()).isEqualTo(path);
            assertThat(adapter.targets()).isEqualTo(EnumSet.allOf(Projection.class));
            assertThat(adapter.maxRank()).isEqualTo(8);
            long expectedBytes = tensors.values().stream().mapToLong(s -> s[0] * s[1] * 4).sum();
            assertThat(adapter.sizeBytes()).isEqualTo(expectedBytes);

            TensorData a = adapter.loraA(1, Projection.K_PROJ);
            TensorData b = adapter.loraB(1, Projection.K_PROJ);
            assertThat(a.shape()).containsExactly(8, 64);
            assertThat(b.shape()).containsExactly(32, 8);
            // Copied out of the file into native memory (the load's disk stage), not a view of a mapping.
            assertThat(a.data().isMapped()).isFalse();
            assertThat(a.data().isNative()).isTrue();
            // The seed of each tensor is its position in the written map, starting at 7.
            int indexOfA = indexOf(tensors, "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight");
            assertThat(a.toFloatArray()).containsExactly(SafeTensorsFiles.randomValues(7 + indexOfA, 8 * 64));
            assertThat(adapter.loraA(2, Projection.DOWN_PROJ).shape()).containsExactly(8, 96);
            assertThat(adapter.loraB(2, Projection.DOWN_PROJ).shape()).containsExactly(64, 8);
            assertThat(adapter.rank(0, Projection.O_PROJ)).isEqualTo(8);
            assertThat(adapter.scale(0, Projection.O_PROJ)).isEqualTo(2.0f);
        }
    }

    private static int indexOf(Map<String, long[]> tensors, String key) {
        int i = 0;
        for (String k : tensors.keySet()) {
            if (k.equals(key)) {
                return i;
            }
            i++;
        }
        throw new AssertionError(key);
    }

    @Test
    void projectionsOutsideTargetModulesAreNotAdapted() {
        try (LoraAdapter adapter = LoraAdapter.load("qv", adapter(config(n -> { }), tensors(8, Q_V, 0, 1, 2)), BASE)) {
            assertThat(adapter.targets()).containsExactly(Projection.Q_PROJ, Projection.V_PROJ);
            assertThat(adapter.adapts(0, Projection.Q_PROJ)).isTrue();
            assertThat(adapter.adapts(0, Projection.K_PROJ)).isFalse();
            assertThat(adapter.loraA(0, Projection.K_PROJ)).isNull();
            assertThat(adapter.loraB(0, Projection.K_PROJ)).isNull();
            assertThat(adapter.rank(0, Projection.K_PROJ)).isZero();
            assertThat(adapter.sizeBytes()).isEqualTo(3 * (8 * 64 + 64 * 8 + 8 * 64 + 32 * 8) * 2L);
            assertThatThrownBy(() -> adapter.adapts(3, Projection.Q_PROJ))
                    .isInstanceOf(IndexOutOfBoundsException.class)
                    .hasMessageContaining("3 layers");
        }
    }

    @Test
    void legacyKeysWithTheAdapterNameAreAccepted() {
        Map<String, long[]> legacy = new LinkedHashMap<>();
        tensors(8, Q_V, 0, 1, 2).forEach((k, v) -> legacy.put(k.replace(".weight", ".default.weight"), v));
        try (LoraAdapter adapter = LoraAdapter.load("old", adapter(config(n -> { }), legacy), BASE)) {
            assertThat(adapter.loraB(2, Projection.V_PROJ).shape()).containsExactly(32, 8);
        }
    }

    @Test
    void rankPatternGivesModulesTheirOwnRankAndScale() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 2);
        tensors.putAll(tensors(16, new String[] {"self_attn.q_proj"}, 1));
        tensors.putAll(tensors(8, new String[] {"self_attn.v_proj"}, 1));
        String config = config(n -> n.putObject("rank_pattern").put("model.layers.1.self_attn.q_proj", 16));
        try (LoraAdapter adapter = LoraAdapter.load("mixed", adapter(config, tensors), BASE)) {
            assertThat(adapter.rank(1, Projection.Q_PROJ)).isEqualTo(16);
            assertThat(adapter.scale(1, Projection.Q_PROJ)).isEqualTo(1.0f);
            assertThat(adapter.rank(1, Projection.V_PROJ)).isEqualTo(8);
            assertThat(adapter.maxRank()).isEqualTo(16);
        }
    }

    @Test
    void layersToTransformAdaptsOnlyTheListedLayers() {
        String config = config(n -> n.putArray("layers_to_transform").add(1));
        try (LoraAdapter adapter = LoraAdapter.load("l1", adapter(config, tensors(8, Q_V, 1)), BASE)) {
            assertThat(adapter.adapts(0, Projection.Q_PROJ)).isFalse();
            assertThat(adapter.adapts(1, Projection.Q_PROJ)).isTrue();
            assertThat(adapter.adapts(2, Projection.V_PROJ)).isFalse();
        }
    }

    @Test
    void loraAWithTheWrongInFeaturesNamesTensorShapeAndExpectedShape() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2);
        tensors.put("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", new long[] {8, 63});
        Path path = adapter(config(n -> { }), tensors);
        assertThatThrownBy(() -> LoraAdapter.load("bad", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(path.resolve(LoraAdapter.WEIGHTS_FILE).toString())
                .hasMessageContaining("tensor 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight' has shape "
                        + "[8, 63] but [8, 64] = [r, in_features] was expected");
    }

    @Test
    void rankThatDisagreesWithTheConfigIsRejected() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2);
        tensors.put("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", new long[] {32, 4});
        Path path = adapter(config(n -> { }), tensors);
        assertThatThrownBy(() -> LoraAdapter.load("bad", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight' has shape [32, 4] "
                        + "but [32, 8] = [out_features, r] was expected, with r = 8");
    }

    @Test
    void adapterForAnotherBaseModelFailsOnShape() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2);
        tensors.replaceAll((k, v) -> k.contains("v_proj.lora_B") ? new long[] {64, 8} : v); // MHA, not GQA
        Path path = adapter(config(n -> { }), tensors);
        assertThatThrownBy(() -> LoraAdapter.load("mha", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("has shape [64, 8] but [32, 8]")
                .hasMessageContaining("trained for this base model");
    }

    @Test
    void missingLoraBNamesTheModule() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2);
        tensors.remove("base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight");
        Path path = adapter(config(n -> { }), tensors);
        assertThatThrownBy(() -> LoraAdapter.load("bad", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("targets model.layers.2.self_attn.q_proj but there is no tensor "
                        + "'base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight'");
    }

    @Test
    void unexpectedTensorsAreRejected() {
        for (String extra : new String[] {
                "base_model.model.lm_head.weight",
                "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
                "base_model.model.model.embed_tokens.lora_embedding_A"}) {
            Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2);
            tensors.put(extra, new long[] {8, 64});
            Path path = write(dir.resolve("extra" + extra.hashCode()), config(n -> { }), tensors, DType.BF16, 1);
            assertThatThrownBy(() -> LoraAdapter.load("extra", path, BASE))
                    .isInstanceOf(ModelFormatException.class)
                    .hasMessageContaining(LoraAdapter.WEIGHTS_FILE)
                    .hasMessageContaining("unexpected tensor '" + extra + "'");
        }
    }

    @Test
    void tensorForAModuleTheConfigDoesNotTargetIsRejected() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2);
        tensors.putAll(tensors(8, new String[] {"self_attn.k_proj"}, 0));
        Path path = adapter(config(n -> { }), tensors);
        assertThatThrownBy(() -> LoraAdapter.load("bad", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("adapts model.layers.0.self_attn.k_proj, which target_modules in "
                        + "adapter_config.json does not select");
    }

    @Test
    void tensorForALayerTheBaseModelLacksIsRejected() {
        Map<String, long[]> tensors = tensors(8, Q_V, 0, 1, 2, 3);
        Path path = adapter(config(n -> { }), tensors);
        assertThatThrownBy(() -> LoraAdapter.load("deep", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("is for layer 3 but the base model has 3 layers");
    }

    @Test
    void pickleOnlyAdapterSaysHowToConvert() throws IOException {
        Path path = dir.resolve("bin");
        Files.createDirectories(path);
        Files.writeString(path.resolve(LoraAdapter.CONFIG_FILE), config(n -> { }));
        Files.writeString(path.resolve("adapter_model.bin"), "pickle");
        assertThatThrownBy(() -> LoraAdapter.load("bin", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(path.resolve(LoraAdapter.WEIGHTS_FILE) + ": file not found")
                .hasMessageContaining("safe_serialization=True");
    }

    @Test
    void badConfigIsReportedBeforeTheWeightsAreOpened() {
        Path path = adapter(config(n -> n.put("use_dora", true)), tensors(8, Q_V, 0, 1, 2));
        assertThatThrownBy(() -> LoraAdapter.load("dora", path, BASE))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageStartingWith(path.resolve(LoraAdapter.CONFIG_FILE) + ": field 'use_dora' is true");
    }
}
