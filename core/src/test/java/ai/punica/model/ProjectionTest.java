package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import java.util.List;

class ProjectionTest {

    // 8 query heads sharing 2 KV heads of 24 dims; head_dim deliberately not hidden/heads.
    private static final ModelConfig GQA = new ModelConfig("llama", 100, 160, 384, 2, 8, 2, 24, 512, 1e-5f, 10000, null,
            false, false, false, 0, 1, List.of(2), "float32");

    @Test
    void featuresFollowGroupedQueryAttentionAndTheMlpWidth() {
        assertThat(Projection.Q_PROJ.inFeatures(GQA)).isEqualTo(160);
        assertThat(Projection.Q_PROJ.outFeatures(GQA)).isEqualTo(8 * 24);
        assertThat(Projection.K_PROJ.outFeatures(GQA)).isEqualTo(2 * 24);
        assertThat(Projection.V_PROJ.outFeatures(GQA)).isEqualTo(2 * 24);
        assertThat(Projection.O_PROJ.inFeatures(GQA)).isEqualTo(8 * 24);
        assertThat(Projection.O_PROJ.outFeatures(GQA)).isEqualTo(160);
        assertThat(Projection.GATE_PROJ.outFeatures(GQA)).isEqualTo(384);
        assertThat(Projection.UP_PROJ.inFeatures(GQA)).isEqualTo(160);
        assertThat(Projection.DOWN_PROJ.inFeatures(GQA)).isEqualTo(384);
        assertThat(Projection.DOWN_PROJ.outFeatures(GQA)).isEqualTo(160);
    }

    @Test
    void namesMatchHuggingFaceModulePaths() {
        assertThat(Projection.fromModuleName("gate_proj")).isEqualTo(Projection.GATE_PROJ);
        assertThat(Projection.fromModuleName("lm_head")).isNull();
        assertThat(Projection.K_PROJ.parent()).isEqualTo("self_attn");
        assertThat(Projection.DOWN_PROJ.weightName(3)).isEqualTo("model.layers.3.mlp.down_proj.weight");
    }
}
