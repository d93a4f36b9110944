package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
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

    @Test
    void logitBiasChangesTheGreedyChoiceAndMinus100BansTheArgmax() {
        float[] l = randomLogits(5);
        int argmax = Sampler.argmax(l, 0, VOCAB);
        int other = (argmax + 7) % VOCAB;
        SamplingParams plain = SamplingParams.greedy(5);
        SamplingParams towards = plain.toBuilder().logitBias(Map.of(other, 30f)).build();
        SamplingParams ban = plain.toBuilder().logitBias(Map.of(argmax, -100f)).build();
        Sampler sampler = new Sampler();
        assertThat(sampler.sample(l, 0, VOCAB, plain, state(plain))).isEqualTo(argmax);
        assertThat(sampler.sample(l, 0, VOCAB, towards, state(towards))).isEqualTo(other);
        int second = secondLargest(l);
        assertThat(sampler.sample(l, 0, VOCAB, ban, state(ban))).isEqualTo(second);
        // Sampled at temperature 1 with a seed: the banned token never comes.
        SamplingParams banned = SamplingParams.builder().temperature(1f).seed(3L).logitBias(Map.of(argmax, -100f))
                .build();
        Sampler.State st = state(banned);
        for (int i = 0; i < 200; i++) {
            assertThat(sampler.sample(l, 0, VOCAB, banned, st)).isNotEqualTo(argmax);
        }
        // The bias is applied before the repetition penalty (vLLM's order): token 2 scores (1 + 1) / 2 = 1,
        // below token 3's 1.2 (penalty first would give 1 / 2 + 1 = 1.5, above it).
        float[] flat = new float[VOCAB];
        flat[2] = 1f;
        flat[3] = 1.2f;
        SamplingParams biasThenPenalty = plain.toBuilder().repetitionPenalty(2f).logitBias(Map.of(2, 1f)).build();
        assertThat(sampler.sample(flat, 0, VOCAB, biasThenPenalty, new Sampler.State(biasThenPenalty,
                new int[] {2}, 1))).isEqualTo(3);
    }

    @Test
    void minTokensBansEosAndStopIdsUntilThatManyTokensThenNot() {
        float[] l = randomLogits(6);
        int eos = Sampler.argmax(l, 0, VOCAB);
        int stopId = secondLargest(l);
        float[] favourStop = l.clone();
        favourStop[stopId] = favourStop[eos] + 1f; // the stop id is now the argmax, EOS second
        SamplingParams p = SamplingParams.greedy(10).toBuilder().minTokens(3).stopTokenIds(List.of(stopId)).build();
        Sampler sampler = new Sampler();
        Sampler.State st = new Sampler.State(p, new int[] {1}, 1, new int[] {eos});
        for (int generated = 0; generated < 3; generated++) {
            int token = sampler.sample(favourStop, 0, VOCAB, p, st);
            assertThat(token).as("token %d", generated).isNotIn(eos, stopId);
            st.accept(token);
        }
        assertThat(sampler.sample(favourStop, 0, VOCAB, p, st)).isEqualTo(stopId);
        // ignore_eos leaves EOS allowed (vLLM masks only the stop ids then)
        SamplingParams ignoring = p.toBuilder().ignoreEos(true).stopTokenIds(List.of()).build();
        assertThat(sampler.sample(l, 0, VOCAB, ignoring, new Sampler.State(ignoring, new int[] {1}, 1,
                new int[] {eos}))).isEqualTo(eos);
        // min_tokens 0 bans nothing
        SamplingParams none = p.toBuilder().minTokens(0).build();
        assertThat(sampler.sample(favourStop, 0, VOCAB, none, new Sampler.State(none, new int[] {1}, 1,
                new int[] {eos}))).isEqualTo(stopId);
    }

    @Test
    void promptLogprobHasTheTokensLogSoftmaxRankAndTop() {
        float[] l = randomLogits(7);
        int token = 11;
        PromptLogprob lp = Sampler.promptLogprob(l, 0, VOCAB, token, 3);
        double z = 0;
        int higher = 0;
        for (float v : l) {
            z += Math.exp(v);
            higher += v > l[token] ? 1 : 0;
        }
        assertThat((double) lp.logprob()).isCloseTo(l[token] - Math.log(z), org.assertj.core.data.Offset.offset(1e-5));
        assertThat(lp.rank()).isEqualTo(higher + 1);
        assertThat(lp.top()).hasSize(3);
        assertThat(lp.top().getFirst().token()).isEqualTo(Sampler.argmax(l, 0, VOCAB));
    }

    @Test
    void newOptionsAreValidatedWithTheParameterName() {
        assertThatThrownBy(() -> SamplingParams.builder().maxTokens(4).minTokens(5).build().validate())
                .isInstanceOf(InvalidRequestException.class).hasMessageContaining("min_tokens");
        assertThatThrownBy(() -> SamplingParams.builder().minTokens(-1).build().validate())
                .hasMessageContaining("min_tokens");
        assertThatThrownBy(() -> SamplingParams.builder().promptLogprobs(21).build().validate())
                .hasMessageContaining("prompt_logprobs");
        assertThatThrownBy(() -> SamplingParams.builder().logitBias(Map.of(3, 101f)).build().validate())
                .hasMessageContaining("logit_bias");
        assertThatThrownBy(() -> SamplingParams.builder().logitBias(Map.of(3, Float.NaN)).build().validate())
                .hasMessageContaining("logit_bias");
        assertThatThrownBy(() -> SamplingParams.builder().logitBias(Map.of(-2, 1f)).build().validate())
                .hasMessageContaining("logit_bias");
        assertThatThrownBy(() -> SamplingParams.builder().logitBias(Map.of(VOCAB, 1f)).build().validateTokens(VOCAB))
                .hasMessageContaining("logit_bias").hasMessageContaining(String.valueOf(VOCAB));
        Map<Integer, Float> many = new java.util.HashMap<>();
        for (int t = 0; t <= SamplingParams.MAX_LOGIT_BIAS; t++) {
            many.put(t, 1f);
        }
        assertThatThrownBy(() -> SamplingParams.builder().logitBias(many).build().validate())
                .hasMessageContaining("logit_bias").hasMessageContaining("300");
        SamplingParams.builder().maxTokens(4).minTokens(4).promptLogprobs(20).logitBias(Map.of(3, -100f, 4, 100f))
                .build().validate();
    }

    private static int secondLargest(float[] l) {
        int first = Sampler.argmax(l, 0, l.length);
        int second = first == 0 ? 1 : 0;
        for (int i = 0; i < l.length; i++) {
            if (i != first && l[i] > l[second]) {
                second = i;
            }
        }
        return second;
    }
}
