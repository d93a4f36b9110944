package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SamplerTest {
    private static final int VOCAB = 50;

    private static float[] randomLogits(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] l = new float[VOCAB];
        for (int i = 0; i < VOCAB; i++) {
            l[i] = (float) r.nextGaussian() * 2f;
        }
        return l;
    }

    private static Sampler.State state(SamplingParams p, int... prompt) {
        return new Sampler.State(p, prompt, 99);
    }

    @Test
    void greedyPicksTheArgmaxAndTheLowestIndexOnTies() {
        float[] l = randomLogits(1);
        int expected = 0;
        for (int i = 1; i < VOCAB; i++) {
            if (l[i] > l[expected]) {
                expected = i;
            }
        }
        SamplingParams p = SamplingParams.greedy(5);
        assertThat(new Sampler().sample(l, 0, VOCAB, p, state(p))).isEqualTo(expected);
        float[] tie = new float[] {0.5f, 3f, 1f, 3f};
        assertThat(new Sampler().sample(tie, 0, 4, p, state(p))).isEqualTo(1);
    }

    @Test
    void sameSeedSameTokensDifferentSeedDifferentTokens() {
        float[] l = randomLogits(2);
        SamplingParams p = SamplingParams.builder().temperature(1.5f).seed(42L).build();
        int[] first = draw(l, p, 40);
        int[] second = draw(l, p, 40);
        int[] other = draw(l, p.toBuilder().seed(43L).build(), 40);
        assertThat(second).isEqualTo(first);
        assertThat(other).isNotEqualTo(first);
    }

    private static int[] draw(float[] l, SamplingParams p, int n) {
        Sampler sampler = new Sampler();
        Sampler.State st = state(p);
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = sampler.sample(l, 0, VOCAB, p, st);
        }
        return out;
    }

    @Test
    void topKOneIsGreedyAndTopKLimitsTheSupport() {
        float[] l = randomLogits(3);
        SamplingParams greedy = SamplingParams.greedy(1);
        int argmax = new Sampler().sample(l, 0, VOCAB, greedy, state(greedy));
        SamplingParams k1 = SamplingParams.builder().temperature(1f).topK(1).seed(1L).build();
        for (int t : draw(l, k1, 50)) {
            assertThat(t).isEqualTo(argmax);
        }
        SamplingParams k3 = SamplingParams.builder().temperature(5f).topK(3).seed(1L).build();
        float[] sorted = l.clone();
        java.util.Arrays.sort(sorted);
        float third = sorted[VOCAB - 3];
        Set<Integer> seen = new HashSet<>();
        for (int t : draw(l, k3, 400)) {
            assertThat(l[t]).isGreaterThanOrEqualTo(third);
            seen.add(t);
        }
        assertThat(seen).hasSize(3); // high temperature: all three get drawn
    }

    @Test
    void topPKeepsTheSmallestSetReachingTheMass() {
        // probabilities ∝ exp(l): token 0 holds ~0.84 of the mass, token 1 ~0.11
        float[] l = new float[VOCAB];
        java.util.Arrays.fill(l, -10f);
        l[0] = 4f;
        l[1] = 2f;
        SamplingParams p = SamplingParams.builder().temperature(1f).topP(0.8f).seed(5L).build();
        for (int t : draw(l, p, 100)) {
            assertThat(t).isZero();
        }
        SamplingParams wider = p.toBuilder().topP(0.95f).build();
        Set<Integer> seen = new HashSet<>();
        for (int t : draw(l, wider, 400)) {
            seen.add(t);
        }
        assertThat(seen).containsExactlyInAnyOrder(0, 1);
    }

    @Test
    void minPDropsTokensFarBelowTheBest() {
        float[] l = new float[VOCAB];
        java.util.Arrays.fill(l, 0f);
        l[7] = 5f; // every other token has p/pmax = e^-5 < 0.05
        SamplingParams p = SamplingParams.builder().temperature(1f).minP(0.05f).seed(9L).build();
        for (int t : draw(l, p, 100)) {
            assertThat(t).isEqualTo(7);
        }
    }

    @Test
    void penaltiesPushRepeatedTokensDown() {
        float[] l = new float[VOCAB];
        l[3] = 2f;
        l[4] = 1.9f;
        SamplingParams frequency = SamplingParams.builder().temperature(0).frequencyPenalty(0.5f).build();
        Sampler.State st = state(frequency);
        Sampler sampler = new Sampler();
        assertThat(sampler.sample(l, 0, VOCAB, frequency, st)).isEqualTo(3);
        st.accept(3);
        assertThat(sampler.sample(l, 0, VOCAB, frequency, st)).isEqualTo(4);

        SamplingParams repetition = SamplingParams.builder().temperature(0).repetitionPenalty(1.2f).build();
        // token 3 is in the prompt: 2 / 1.2 < 1.9
        assertThat(sampler.sample(l, 0, VOCAB, repetition, state(repetition, 3))).isEqualTo(4);
        assertThat(sampler.sample(l, 0, VOCAB, repetition, state(repetition, 8))).isEqualTo(3);
    }

    @Test
    void logprobsAreLogSoftmaxWithTheTopAlternativesInOrder() {
        float[] l = randomLogits(4);
        TokenLogprob lp = Sampler.logprobs(l, 0, VOCAB, 5, 4);
        double z = 0;
        for (float v : l) {
            z += Math.exp(v);
        }
        assertThat((double) lp.logprob()).isCloseTo(l[5] - Math.log(z), org.assertj.core.data.Offset.offset(1e-5));
        List<TokenLogprob.Alternative> top = lp.top();
        assertThat(top).hasSize(4);
        for (int i = 1; i < top.size(); i++) {
            assertThat(top.get(i).logprob()).isLessThanOrEqualTo(top.get(i - 1).logprob());
        }
        int argmax = Sampler.argmax(l, 0, VOCAB);
        assertThat(top.getFirst().token()).isEqualTo(argmax);
    }

    @Test
    void invalidValuesAreRefusedWithTheParameterName() {
        assertThatThrownBy(() -> SamplingParams.builder().temperature(-1).build().validate())
                .isInstanceOf(InvalidRequestException.class).hasMessageContaining("temperature");
        assertThatThrownBy(() -> SamplingParams.builder().topP(0).build().validate())
                .hasMessageContaining("top_p");
        assertThatThrownBy(() -> SamplingParams.builder().maxTokens(-3).build().validate())
                .hasMessageContaining("max_tokens").hasMessageContaining("-3");
        assertThatThrownBy(() -> SamplingParams.builder().logprobs(50).build().validate())
                .hasMessageContaining("logprobs");
        assertThatThrownBy(() -> SamplingParams.builder().stop(List.of("")).build().validate())
                .hasMessageContaining("stop");
    }
}
