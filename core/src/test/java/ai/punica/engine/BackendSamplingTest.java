package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.Tensor;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@code Backend.sample} on the reference backend against the engine's host sampling ({@link Sampler}),
 * row for row over several steps: the same tokens, log-probabilities and generator draws.
 */
class BackendSamplingTest {
    private static final float[] TEMPERATURES = {0f, 0.7f, 1.5f};
    private static final float[] TOP_PS = {1f, 0.8f, 1e-4f};
    private static final float[] MIN_PS = {0f, 0.1f};
    private static final int[] VOCABS = {1, 2, 17, 50, 256, 1000};

    /** One sampling configuration: every combination of the coarse classes, values drawn within. */
    private static List<SamplingParams> everyCombination(SplittableRandom random) {
        List<SamplingParams> all = new ArrayList<>();
        for (float temperature : TEMPERATURES) {
            for (int topKClass = 0; topKClass < 4; topKClass++) {
                for (float topP : TOP_PS) {
                    for (float minP : MIN_PS) {
                        for (int penalties = 0; penalties < 4; penalties++) {
                            int topK = switch (topKClass) {
                                case 0 -> random.nextBoolean() ? 0 : -1;
                                case 1 -> 1;
                                case 2 -> 5;
                                default -> 1 << 20; // past any vocabulary: all tokens
                            };
                            all.add(SamplingParams.builder().temperature(temperature).topK(topK).topP(topP).minP(minP)
                                    .repetitionPenalty(penalties % 2 == 1 ? (random.nextBoolean() ? 1.3f : 0.8f) : 1f)
                                    .presencePenalty(penalties >= 2 ? (float) random.nextDouble(-2, 2) : 0f)
                                    .frequencyPenalty(penalties >= 2 ? (float) random.nextDouble(-2, 2) : 0f)
                                    .seed(random.nextLong()).logprobs(random.nextInt(-1, SamplingParams.MAX_LOGPROBS + 1))
                                    .build());
                        }
                    }
                }
            }
        }
        return all;
    }

    private static float[] randomLogits(SplittableRandom random, int n, boolean ties) {
        float[] l = new float[n];
        for (int i = 0; i < n; i++) {
            float v = (float) (random.nextGaussian() * 3);
            l[i] = ties ? Math.round(v * 2) / 2f : v; // half-steps: many equal logits
        }
        return l;
    }

    @Test
    void referenceBackendSampleEqualsHostSamplerOnSeededRandomCases() {
        SplittableRandom random = new SplittableRandom(2024);
        ReferenceBackend backend = new ReferenceBackend();
        Sampler host = new Sampler();
        List<SamplingParams> combinations = everyCombination(random);
        int rows = 0;
        int withLogprobs = 0;
        int penaltyTokens = 0;
        for (int first = 0; first < combinations.size(); ) {
            int count = Math.min(random.nextInt(1, 13), combinations.size() - first);
            List<SamplingParams> params = combinations.subList(first, first + count);
            first += count;
            int vocab = VOCABS[random.nextInt(VOCABS.length)];
            boolean ties = random.nextBoolean();
            Sampler.State[] hostStates = new Sampler.State[count];
            Sampler.State[] backendStates = new Sampler.State[count];
            for (int r = 0; r < count; r++) {
                int[] prompt = new int[random.nextInt(1, 10)];
                for (int i = 0; i < prompt.length; i++) {
                    prompt[i] = random.nextInt(vocab);
                }
                hostStates[r] = new Sampler.State(params.get(r), prompt, 0);
                backendStates[r] = new Sampler.State(params.get(r), prompt, 0);
                for (int i = random.nextInt(4); i > 0; i--) { // some tokens already generated
                    int t = random.nextInt(vocab);
                    hostStates[r].accept(t);
                    backendStates[r].accept(t);
                }
            }
            Tensor logits = backend.allocate(count, vocab);
            for (int step = 0; step < 3; step++) {
                float[] values = randomLogits(random, count * vocab, ties);
                backend.upload(values, logits);
                SamplingBatch.Builder batch = SamplingBatch.builder();
                for (int r = 0; r < count; r++) {
                    backendStates[r].addRow(params.get(r), batch);
                }
                SamplingBatch built = batch.build();
                penaltyTokens += built.penaltyTokens().length;
                List<SampledToken> sampled = backend.sample(logits, built);
                for (int r = 0; r < count; r++) {
                    SamplingParams p = params.get(r);
                    int want = host.sample(values, r * vocab, vocab, p, hostStates[r]);
                    SampledToken got = sampled.get(r);
                    assertThat(got.token()).as("row %d of %d, vocab %d, step %d, %s", r, count, vocab, step, p)
                            .isEqualTo(want);
                    if (p.logprobs() >= 0) {
                        assertThat(Sampler.toTokenLogprob(got)).as("logprobs of %s", p)
                                .isEqualTo(Sampler.logprobs(values, r * vocab, vocab, want, p.logprobs()));
                        withLogprobs++;
                    } else {
                        assertThat(got.logprob()).isNaN();
                    }
                    hostStates[r].accept(want);
                    backendStates[r].accept(want);
                    rows++;
                }
            }
            backend.free(logits);
        }
        assertThat(rows).isEqualTo(3 * combinations.size());
        assertThat(withLogprobs).isPositive();
        assertThat(penaltyTokens).isPositive();
    }

    @Test
    void greedyRowsDrawNothingFromTheGenerator() {
        SamplingParams greedy = SamplingParams.builder().temperature(0).seed(5L).build();
        SamplingParams sampled = greedy.toBuilder().temperature(1f).build();
        Sampler.State state = new Sampler.State(greedy, new int[] {1}, 0);
        SamplingBatch.Builder batch = SamplingBatch.builder();
        state.addRow(greedy, batch);
        state.addRow(sampled, batch);
        // the sampled row got the generator's first draw
        assertThat(batch.build().row(1).uniform()).isEqualTo(new SplittableRandom(5L).nextDouble());
    }
}
