package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The committed tiny Llama (fixtures/model, see tools/fixtures/README.md) read through ModelConfig and
 * Checkpoint. Fails, never skips, when the fixtures are missing.
 */
class FixtureModelTest {

    private static Path model;

    @BeforeAll
    static void fixturesExist() {
        model = Fixtures.model();
        assertThat(model.resolve("config.json"))
                .as("fixtures/model/config.json is missing: generate it with tools/fixtures/make_fixtures.py "
                        + "or point -Dpunica.repo.root at a checkout that has it")
                .isRegularFile();
    }

    @Test
    void configIsTheDocumentedTinyLlamaWithLlama3Rope() {
        ModelConfig c = ModelConfig.load(model.resolve("config.json"));
        assertThat(c.modelType()).isEqualTo("llama");
        assertThat(c.vocabSize()).isEqualTo(1024);
        assertThat(c.hiddenSize()).isEqualTo(256);
        assertThat(c.intermediateSize()).isEqualTo(704);
        assertThat(c.numLayers()).isEqualTo(6);
        assertThat(c.numHeads()).isEqualTo(8);
        assertThat(c.numKvHeads()).isEqualTo(2);
        assertThat(c.headDim()).isEqualTo(32);
        assertThat(c.maxPositionEmbeddings()).isEqualTo(1024);
        assertThat(c.rmsNormEps()).isEqualTo(1e-5f);
        assertThat(c.ropeTheta()).isEqualTo(10000.0);
        assertThat(c.ropeScaling()).isEqualTo(RopeScaling.llama3(8.0, 1.0, 4.0, 256));
        assertThat(c.tieWordEmbeddings()).isFalse();
        assertThat(c.attentionBias()).isFalse();
        assertThat(c.mlpBias()).isFalse();
        assertThat(c.bosTokenId()).isEqualTo(1);
        assertThat(c.eosTokenIds()).containsExactly(2);
        assertThat(c.ropeTable().halfDim()).isEqualTo(16);

        GenerationConfig g = GenerationConfig.load(model);
        assertThat(g.bosTokenId()).isEqualTo(1);
        assertThat(g.eosTokenIds()).containsExactly(2);
        assertThat(g.padTokenId()).isEqualTo(0);
    }

    @Test
    void checkpointHoldsExactlyTheTensorsTheConfigImpliesInBf16() {
        ModelConfig c = ModelConfig.load(model.resolve("config.json"));
        long vocab = c.vocabSize();
        long hidden = c.hiddenSize();
        long inter = c.intermediateSize();
        long q = (long) c.numHeads() * c.headDim();
        long kv = (long) c.numKvHeads() * c.headDim();
        Map<String, long[]> expected = new LinkedHashMap<>();
        expected.put("model.embed_tokens.weight", new long[] {vocab, hidden});
        for (int i = 0; i < c.numLayers(); i++) {
            String l = "model.layers." + i + ".";
            expected.put(l + "input_layernorm.weight", new long[] {hidden});
            expected.put(l + "post_attention_layernorm.weight", new long[] {hidden});
            expected.put(l + "self_attn.q_proj.weight", new long[] {q, hidden});
            expected.put(l + "self_attn.k_proj.weight", new long[] {kv, hidden});
            expected.put(l + "self_attn.v_proj.weight", new long[] {kv, hidden});
            expected.put(l + "self_attn.o_proj.weight", new long[] {hidden, q});
            expected.put(l + "mlp.gate_proj.weight", new long[] {inter, hidden});
            expected.put(l + "mlp.up_proj.weight", new long[] {inter, hidden});
            expected.put(l + "mlp.down_proj.weight", new long[] {hidden, inter});
        }
        expected.put("model.norm.weight", new long[] {hidden});
        expected.put("lm_head.weight", new long[] {vocab, hidden});

        assertThat(c.weightShapes().keySet()).containsExactlyInAnyOrderElementsOf(expected.keySet());
        try (Checkpoint ckpt = Checkpoint.open(model)) {
            assertThat(ckpt.names()).containsExactlyInAnyOrderElementsOf(expected.keySet());
            expected.forEach((name, shape) -> {
                TensorData t = ckpt.get(name);
                assertThat(t.shape()).as(name).containsExactly(shape);
                assertThat(t.dtype()).as(name).isEqualTo(DType.BF16);
                assertThat(c.weightShapes().get(name)).as(name).containsExactly(shape);
            });
            // Trained weights: finite and not all zero (norm weights included).
            for (String name : new String[] {"model.layers.0.self_attn.q_proj.weight", "model.norm.weight",
                    "lm_head.weight"}) {
                float[] values = ckpt.get(name).toFloatArray();
                double sumAbs = 0;
                for (float v : values) {
                    assertThat(Float.isFinite(v)).as(name).isTrue();
                    sumAbs += Math.abs(v);
                }
                assertThat(sumAbs).as(name).isPositive();
            }
        }
    }
}
