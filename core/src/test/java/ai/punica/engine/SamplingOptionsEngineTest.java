package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.HfReference;
import ai.punica.HfReference.Run;
import ai.punica.model.ModelHarness;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * vLLM's request options that reach into the sampler and the model, through the whole engine with the
 * fixture model: {@code prompt_logprobs} against log-softmax of the model's logits at every prompt position
 * (computed prefix by prefix, independently of the engine's layout), {@code min_tokens} and
 * {@code logit_bias} against the greedy continuations of HF. On the CPU backend (the host samples from
 * downloaded logits) and the reference backend (it samples itself; the engine downloads only for
 * prompt_logprobs).
 */
class SamplingOptionsEngineTest {

    /** Both sides compute float32 forwards of one model; only the row layout (and so summation order) differs. */
    private static final double LOGPROB_TOLERANCE = 2e-3;

    /** Small steps and few logit rows, so prompt logit rows are chunked and capped by the scheduler. */
    private static EngineBuilder.Runtime start(String backend) {
        EngineConfig config = EngineConfig.builder().maxBatchTokens(8).maxRunning(4).loraSlots(4)
                .kvCacheBytes(8L << 20).build();
        return EngineFixtureTest.builder().backend(backend).config(config).build();
    }

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "reference"})
    void promptLogprobsEqualLogSoftmaxOfTheModelAtEveryPromptPosition(String backend) {
        HfReference ref = HfReference.load();
        Run base = ref.single().stream().filter(r -> r.adapter() == null).findFirst().orElseThrow();
        Run adapted = ref.single().stream().filter(r -> "sort".equals(r.adapter())).findFirst().orElseThrow();
        int top = 3;
        List<Run> runs = List.of(base, adapted);
        List<CompletableFuture<Completion>> futures = new ArrayList<>();
        try (EngineBuilder.Runtime rt = start(backend)) {
            for (Run run : runs) { // together, with a plain request beside them: they share steps
                futures.add(rt.engine().generate(EngineFixtureTest.request(run.adapter(), run.promptIds(),
                        SamplingParams.greedy(4).toBuilder().promptLogprobs(top).build())));
            }
            Completion plain = rt.engine().generate(EngineFixtureTest.request(null, base.promptIds(),
                    SamplingParams.greedy(4))).join();
            assertThat(plain.promptLogprobs()).isNull();
            List<Completion> done = futures.stream().map(CompletableFuture::join).toList();
            try (ModelHarness harness = new ModelHarness(Fixtures.model(),
                    Map.of("sort", Fixtures.adapter("sort")), backend)) {
                for (int i = 0; i < runs.size(); i++) {
                    checkAgainstPrefixes(harness, runs.get(i), done.get(i), top);
                    assertThat(done.get(i).tokens()).as("the output is unchanged by prompt_logprobs")
                            .containsExactly(Arrays.copyOf(runs.get(i).greedyIds(), 4));
                }
            }
            EngineFixtureTest.assertNoLeak(rt.engine());
        }
    }

    /** One logit row per step: the prompt rows go one at a time, then the sampled row; nothing starves. */
    @Test
    void promptLogprobsFitAStepOfOneLogitRow() {
        HfReference ref = HfReference.load();
        Run run = ref.single().stream().filter(r -> r.adapter() == null).findFirst().orElseThrow();
        EngineConfig config = EngineConfig.builder().maxBatchTokens(4).maxRunning(1).loraSlots(4)
                .kvCacheBytes(8L << 20).build();
        try (EngineBuilder.Runtime rt = EngineFixtureTest.builder().backend("cpu").config(config).build();
             ModelHarness harness = new ModelHarness(Fixtures.model(), Map.of(), "cpu")) {
            List<CompletableFuture<Completion>> futures = new ArrayList<>();
            for (int i = 0; i < 2; i++) { // the second waits for the first's only slot
                futures.add(rt.engine().generate(EngineFixtureTest.request(null, run.promptIds(),
                        SamplingParams.greedy(2).toBuilder().promptLogprobs(1).build())));
            }
            for (CompletableFuture<Completion> f : futures) {
                Completion c = f.join();
                assertThat(c.promptLogprobs()).hasSize(run.promptIds().length);
                assertThat(c.promptLogprobs().stream().skip(1)).doesNotContainNull();
            }
            checkAgainstPrefixes(harness, run, futures.getFirst().join(), 1);
            EngineFixtureTest.assertNoLeak(rt.engine());
        }
    }

    /** A listener hears the prompt_logprobs once, before the first token (a stream's echo sends them with it). */
    @Test
    void promptLogprobsAreToldBeforeTheFirstToken() {
        Run run = HfReference.load().single().stream().filter(r -> r.adapter() == null).findFirst().orElseThrow();
        try (EngineBuilder.Runtime rt = start("cpu")) { // 8-token steps: the prompt's rows come over several steps
            List<Object> heard = new ArrayList<>();
            CompletableFuture<Completion> done = new CompletableFuture<>();
            rt.engine().submit(EngineFixtureTest.request(null, run.promptIds(),
                    SamplingParams.greedy(3).toBuilder().promptLogprobs(2).build()), recording(heard, done));
            Completion c = done.join();
            assertThat(heard.getFirst()).as("before the first token").isEqualTo(c.promptLogprobs());
            assertThat(heard.stream().filter(List.class::isInstance)).as("once").hasSize(1);
            assertThat(c.promptLogprobs().stream().skip(1)).doesNotContainNull();
            // without prompt_logprobs, nothing is told
            List<Object> none = new ArrayList<>();
            CompletableFuture<Completion> plain = new CompletableFuture<>();
            rt.engine().submit(EngineFixtureTest.request(null, run.promptIds(), SamplingParams.greedy(2)),
                    recording(none, plain));
            plain.join();
            assertThat(none).as("only tokens").isNotEmpty().allMatch(TokenDelta.class::isInstance);
            EngineFixtureTest.assertNoLeak(rt.engine());
        }
    }

    /** A listener that adds every token delta and prompt_logprobs list to {@code heard}, and completes {@code done}. */
    private static GenerationListener recording(List<Object> heard, CompletableFuture<Completion> done) {
        return new GenerationListener() {
            @Override
            public void onToken(TokenDelta delta) {
                heard.add(delta);
            }

            @Override
            public void onPromptLogprobs(List<PromptLogprob> promptLogprobs) {
                heard.add(promptLogprobs);
            }

            @Override
            public void onFinish(Completion completion) {
                done.complete(completion);
            }

            @Override
            public void onError(EngineException error) {
                done.completeExceptionally(error);
            }
        };
    }

    private static void checkAgainstPrefixes(ModelHarness harness, Run run, Completion c, int top) {
        int[] prompt = run.promptIds();
        List<PromptLogprob> got = c.promptLogprobs();
        assertThat(got).hasSize(prompt.length);
        assertThat(got.getFirst()).as("the first prompt token has no logprob").isNull();
        List<ModelHarness.Input> prefixes = new ArrayList<>();
        for (int p = 0; p + 1 < prompt.length; p++) {
            prefixes.add(new ModelHarness.Input(Arrays.copyOf(prompt, p + 1), run.adapter()));
        }
        float[][] logits = harness.lastLogits(prefixes);
        for (int p = 0; p + 1 < prompt.length; p++) {
            float[] l = logits[p];
            int token = prompt[p + 1];
            double logZ = logSumExp(l);
            PromptLogprob lp = got.get(p + 1);
            String at = run.promptName() + "/" + run.adapter() + " position " + (p + 1);
            assertThat(lp.token()).as(at).isEqualTo(token);
            assertThat((double) lp.logprob()).as(at).isCloseTo(l[token] - logZ, Offset.offset(LOGPROB_TOLERANCE));
            int higher = 0;
            int close = 0;
            for (float v : l) {
                higher += v > l[token] + LOGPROB_TOLERANCE ? 1 : 0;
                close += Math.abs(v - l[token]) <= LOGPROB_TOLERANCE ? 1 : 0;
            }
            assertThat(lp.rank()).as(at + " rank").isBetween(higher + 1, higher + close);
            assertThat(lp.top()).as(at).hasSize(top);
            int best = 0;
            for (int i = 1; i < l.length; i++) {
                best = l[i] > l[best] ? i : best;
            }
            assertThat(lp.top().getFirst().token()).as(at + " most likely").isEqualTo(best);
            assertThat((double) lp.top().getFirst().logprob()).isCloseTo(l[best] - logZ,
                    Offset.offset(LOGPROB_TOLERANCE));
        }
    }

    private static double logSumExp(float[] l) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : l) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (float v : l) {
            sum += Math.exp(v - max);
        }
        return max + Math.log(sum);
    }

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "reference"})
    void minTokensKeepsGeneratingPastEosThenStopsAsUsual(String backend) {
        HfReference ref = HfReference.load();
        Run run = ref.single().stream().filter(r -> r.stoppedOnEos() && r.greedyIds().length < 12).findFirst()
                .orElseThrow(() -> new AssertionError("the reference has a run that stops on EOS early"));
        int[] greedy = run.greedyIds();
        int eos = greedy[greedy.length - 1];
        int min = greedy.length + 2;
        try (EngineBuilder.Runtime rt = start(backend)) {
            Completion c = rt.engine().generate(EngineFixtureTest.request(run.adapter(), run.promptIds(),
                    SamplingParams.greedy(min + 20).toBuilder().minTokens(min).build())).join();
            int[] out = c.tokens();
            assertThat(out.length).as("at least min_tokens tokens").isGreaterThanOrEqualTo(min);
            assertThat(Arrays.copyOf(out, greedy.length - 1)).as("unchanged before the EOS HF stopped on")
                    .containsExactly(Arrays.copyOf(greedy, greedy.length - 1));
            for (int i = 0; i < min; i++) {
                assertThat(out[i]).as("token %d, before min_tokens", i).isNotEqualTo(eos);
            }
            // A stop token id that greedy decoding picks first is banned until min_tokens, too.
            int stopId = greedy[0];
            Completion stopped = rt.engine().generate(EngineFixtureTest.request(run.adapter(), run.promptIds(),
                    SamplingParams.greedy(30).toBuilder().ignoreEos(true).stopTokenIds(List.of(stopId)).minTokens(2)
                            .build())).join();
            assertThat(stopped.tokens()[0]).isNotEqualTo(stopId);
            assertThat(stopped.tokens()[1]).isNotEqualTo(stopId);
            // A stop string found in the text of the first min_tokens tokens does not end the output.
            String first = rt.tokenizer().decode(new int[] {greedy[0]}, true).strip();
            if (!first.isEmpty()) {
                Completion withStop = rt.engine().generate(EngineFixtureTest.request(run.adapter(),
                        run.promptIds(), SamplingParams.greedy(6).toBuilder().ignoreEos(true)
                                .stop(List.of(first)).minTokens(3).build())).join();
                Completion early = rt.engine().generate(EngineFixtureTest.request(run.adapter(),
                        run.promptIds(), SamplingParams.greedy(6).toBuilder().ignoreEos(true)
                                .stop(List.of(first)).build())).join();
                assertThat(early.tokens()).hasSize(1);
                assertThat(withStop.tokens().length).isGreaterThanOrEqualTo(3);
                assertThat(withStop.text()).contains(first);
            }
            EngineFixtureTest.assertNoLeak(rt.engine());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "reference"})
    void logitBiasSteersGreedyDecodingButNotTheReportedLogprobs(String backend) {
        HfReference ref = HfReference.load();
        Run run = ref.single().getFirst();
        int[] greedy = run.greedyIds();
        int favoured = greedy[0] == 40 ? 41 : 40;
        try (EngineBuilder.Runtime rt = start(backend)) {
            Completion towards = rt.engine().generate(EngineFixtureTest.request(run.adapter(), run.promptIds(),
                    SamplingParams.greedy(3).toBuilder().ignoreEos(true).logprobs(1)
                            .logitBias(Map.of(favoured, 100f)).build())).join();
            assertThat(towards.tokens()).containsOnly(favoured);
            // vLLM's raw logprobs: the favoured token's logprob is that of the unbiased logits
            assertThat(towards.logprobs().getFirst().logprob()).isLessThan(-0.01f);
            Completion away = rt.engine().generate(EngineFixtureTest.request(run.adapter(), run.promptIds(),
                    SamplingParams.greedy(1).toBuilder().logitBias(Map.of(greedy[0], -100f)).build())).join();
            assertThat(away.tokens()[0]).isNotEqualTo(greedy[0]);
            int outside = rt.model().config().vocabSize();
            assertThatThrownBy(() -> rt.engine().generate(EngineFixtureTest.request(null, run.promptIds(),
                    SamplingParams.greedy(1).toBuilder().logitBias(Map.of(outside, 1f)).build())))
                    .isInstanceOf(InvalidRequestException.class).hasMessageContaining("logit_bias");
            EngineFixtureTest.assertNoLeak(rt.engine());
        }
    }
}
