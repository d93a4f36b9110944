package ai.punica.backend;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.reference.ReferenceBackend;
import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The rules device kernels must follow where ties and the draw's ends are concerned. */
class ScalarSamplerTest {

    private static SamplingBatch one(SamplingRow row) {
        return SamplingBatch.builder().row(row).build();
    }

    private static SamplingRow sampled(int topK, float topP, double uniform) {
        return new SamplingRow(1f, topK, topP, 0f, 1f, 0f, 0f, uniform, -1);
    }

    /** Every token the draw can reach, over uniform draws spread across [0, 1). */
    private static Set<Integer> support(float[] logits, SamplingRow row) {
        ScalarSampler sampler = new ScalarSampler();
        Set<Integer> seen = new HashSet<>();
        for (int i = 0; i < 1000; i++) {
            SamplingRow r = new SamplingRow(row.temperature(), row.topK(), row.topP(), row.minP(), 1f, 0f, 0f,
                    i / 1000.0, -1);
            seen.add(sampler.pick(logits, 0, logits.length, one(r), 0));
        }
        return seen;
    }

    @Test
    void topKKeepsEveryTokenEqualToTheKth() {
        float[] logits = {3f, 1f, 2f, 2f, 0.5f, 2f};
        assertThat(support(logits, sampled(2, 1f, 0))).containsExactlyInAnyOrder(0, 2, 3, 5);
    }

    @Test
    void topPKeepsEveryTokenEqualToTheLastOneNeeded() {
        // p ∝ e^l: token 0 alone is below 0.5 of the mass, with one of the tied tokens it is above
        float[] logits = {2f, 1.5f, 1.5f, -3f};
        assertThat(support(logits, sampled(0, 0.5f, 0))).containsExactlyInAnyOrder(0, 1, 2);
        assertThat(support(logits, sampled(0, 1e-6f, 0))).containsExactly(0);
    }

    @Test
    void theDrawWalksKeptTokensInIndexOrder() {
        float[] logits = {0f, 5f, 0f, 5f, 0f};
        ScalarSampler sampler = new ScalarSampler();
        // top-k 2 keeps tokens 1 and 3, half the mass each
        assertThat(sampler.pick(logits, 0, 5, one(sampled(2, 1f, 0)), 0)).isEqualTo(1);
        assertThat(sampler.pick(logits, 0, 5, one(sampled(2, 1f, 0.4999)), 0)).isEqualTo(1);
        assertThat(sampler.pick(logits, 0, 5, one(sampled(2, 1f, 0.5001)), 0)).isEqualTo(3);
        assertThat(sampler.pick(logits, 0, 5, one(sampled(2, 1f, Math.nextDown(1.0))), 0)).isEqualTo(3);
        float[] kept = sampler.keptProbabilities(logits, 0, 5, one(sampled(2, 1f, 0)), 0);
        assertThat(kept[0]).isZero();
        assertThat(kept[1]).isEqualTo(kept[3]).isGreaterThan(0.49f);
    }

    @Test
    void topLogprobsPutTheLowestIndexFirstAmongEqualLogits() {
        float[] logits = {1f, 4f, 2f, 4f, 2f, 2f};
        SampledToken t = ScalarSampler.logprobs(logits, 0, 6, 2, 4);
        assertThat(t.topTokens()).containsExactly(1, 3, 2, 4);
        assertThat(t.topLogprobs()[0]).isEqualTo(t.topLogprobs()[1]);
        assertThat(ScalarSampler.logprobs(logits, 0, 6, 2, 20).topTokens()).containsExactly(1, 3, 2, 4, 5, 0);
    }

    @Test
    void sampleRefusesBadRowsNamingTheRowAndTheValue() {
        ReferenceBackend backend = new ReferenceBackend();
        assertThat(backend.supportsSampling()).isTrue();
        Tensor logits = backend.allocate(2, 8);
        backend.upload(new float[] {1, 2, 3, 4, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3, 2, 1}, logits);
        SamplingRow ok = sampled(0, 1f, 0.5);
        assertThat(backend.sample(logits, SamplingBatch.builder().row(ok).row(SamplingRow.GREEDY).build()))
                .extracting(SampledToken::token).element(1).isEqualTo(0);
        assertThatThrownBy(() -> backend.sample(logits, one(ok)))
                .hasMessageContaining("logits").hasMessageContaining("1 sampling rows");
        assertThatThrownBy(() -> backend.sample(logits, SamplingBatch.builder().row(ok)
                .row(new SamplingRow(1f, 0, 1.5f, 0f, 1f, 0f, 0f, 0.5, -1)).build()))
                .hasMessageContaining("row 1").hasMessageContaining("topP 1.5");
        assertThatThrownBy(() -> backend.sample(logits, SamplingBatch.builder().row(ok).penalty(8, 1)
                .row(ok).build())).hasMessageContaining("row 0").hasMessageContaining("penalty token 8");
        assertThatThrownBy(() -> backend.sample(logits, SamplingBatch.builder().row(ok).row(ok).penalty(3, 1)
                .penalty(3, 0).build())).hasMessageContaining("row 1").hasMessageContaining("listed twice");
        assertThatThrownBy(() -> backend.sample(logits, SamplingBatch.builder().row(ok)
                .row(new SamplingRow(1f, 0, 1f, 0f, 1f, 0f, 0f, 1.0, -1)).build()))
                .hasMessageContaining("uniform 1.0");
    }
}
