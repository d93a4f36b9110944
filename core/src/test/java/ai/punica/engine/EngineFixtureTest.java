package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.EvalSet;
import ai.punica.Fixtures;
import ai.punica.HfReference.Run;
import ai.punica.HfReference;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The whole engine on the CPU backend with the fixture model and its four adapters. */
class EngineFixtureTest {
    private static EngineBuilder.Runtime runtime;
    private static Engine engine;
    private static final AtomicInteger ids = new AtomicInteger();

    static EngineBuilder builder() {
        EngineBuilder b = new EngineBuilder().model(Fixtures.model()).backend("cpu");
        for (String skill : EvalSet.SKILLS) {
            if (EvalSet.adapterFor(skill) != null) {
                b.adapter(skill, Fixtures.adapter(skill));
            }
        }
        return b;
    }

    @BeforeAll
    static void start() {
        runtime = builder().config(EngineConfig.builder().maxBatchTokens(256).maxRunning(32).loraSlots(4).build())
                .build();
        engine = runtime.engine();
    }

    @AfterAll
    static void stop() {
        runtime.close();
    }

    @AfterEach
    void nothingLeaks() {
        assertNoLeak(engine);
    }

    /** After every test: every KV page back in the pool and no adapter slot pinned. */
    static void assertNoLeak(Engine e) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (System.nanoTime() < deadline && (e.stats().running() > 0 || e.stats().waiting() > 0)) {
            Thread.onSpinWait();
        }
        int pagesUsed = e.callOnEngineThread(() -> e.stats().kvPagesUsed());
        assertThat(e.callOnEngineThread(() -> e.adapters().pinnedSlots())).as("pinned adapter slots").isZero();
        assertThat(e.liveRequestIds()).as("live requests").isEmpty();
        assertThat(pagesUsed).as("KV pages in use").isZero();
    }

    static GenerationRequest request(String adapter, int[] prompt, SamplingParams params) {
        return new GenerationRequest("t-" + ids.incrementAndGet(), adapter, prompt, params);
    }

    @Test
    void greedyContinuationsEqualHfTokenForToken() {
        HfReference ref = HfReference.load();
        List<CompletableFuture<Completion>> futures = new ArrayList<>();
        for (Run run : ref.single()) { // all at once: they share steps
            futures.add(engine.generate(request(run.adapter(), run.promptIds(),
                    SamplingParams.greedy(ref.maxNewTokens()))));
        }
        for (int i = 0; i < futures.size(); i++) {
            Run run = ref.single().get(i);
            Completion c = futures.get(i).join();
            assertThat(c.tokens()).as("%s / %s (min margin %s)", run.promptName(), run.adapter(), run.minMargin())
                    .containsExactly(run.greedyIds());
            assertThat(c.text()).isEqualTo(run.greedyText());
            assertThat(c.finishReason()).isEqualTo(run.stoppedOnEos() ? FinishReason.STOP : FinishReason.LENGTH);
        }
    }

    @Test
    void heldOutAccuracyUnderMixedConcurrencyEqualsAccuracyAlone() {
        var tokenizer = runtime.tokenizer();
        Map<String, List<String>> alone = new HashMap<>();
        Map<String, List<CompletableFuture<Completion>>> together = new HashMap<>();
        // Alone: each adapter by itself, its whole set at once (no other adapter in any step).
        for (String skill : EvalSet.SKILLS) {
            List<CompletableFuture<Completion>> futures = new ArrayList<>();
            for (EvalSet.Example ex : EvalSet.load(skill)) {
                futures.add(engine.generate(request(EvalSet.adapterFor(skill), tokenizer.encode(ex.prompt(), true),
                        SamplingParams.greedy(32))));
            }
            alone.put(skill, futures.stream().map(f -> f.join().text()).toList());
        }
        // Together: every example of every skill submitted at once, interleaved across adapters, so
        // each step mixes the base and all four adapters (up to 32 running).
        int longest = 0;
        for (String skill : EvalSet.SKILLS) {
            together.put(skill, new ArrayList<>());
            longest = Math.max(longest, EvalSet.load(skill).size());
        }
        for (int i = 0; i < longest; i++) {
            for (String skill : EvalSet.SKILLS) {
                List<EvalSet.Example> set = EvalSet.load(skill);
                if (i < set.size()) {
                    together.get(skill).add(engine.generate(request(EvalSet.adapterFor(skill),
                            tokenizer.encode(set.get(i).prompt(), true), SamplingParams.greedy(32))));
                }
            }
        }
        for (String skill : EvalSet.SKILLS) {
            List<EvalSet.Example> set = EvalSet.load(skill);
            int correctAlone = 0;
            int correctTogether = 0;
            int identical = 0;
            for (int i = 0; i < set.size(); i++) {
                String a = alone.get(skill).get(i).strip();
                String t = together.get(skill).get(i).join().text().strip();
                correctAlone += a.equals(set.get(i).expected()) ? 1 : 0;
                correctTogether += t.equals(set.get(i).expected()) ? 1 : 0;
                identical += a.equals(t) ? 1 : 0;
            }
            double accuracy = (double) correctTogether / set.size();
            assertThat(accuracy).as("%s accuracy with 16+ concurrent mixed requests", skill).isGreaterThanOrEqualTo(0.95);
            assertThat(correctTogether).as("%s: correct together vs alone", skill).isEqualTo(correctAlone);
            assertThat(identical).as("%s: outputs identical together and alone", skill).isEqualTo(set.size());
        }
        assertThat(engine.stats().steps()).isPositive();
    }

    @Test
    void preemptedRequestsResumeWithIdenticalOutput() {
        // A KV pool of a few pages: 24 requests cannot all fit, so the newest are preempted and recomputed.
        EngineConfig small = EngineConfig.builder().maxBatchTokens(64).maxRunning(16).pageSize(4).loraSlots(4)
                .kvCacheBytes(kvBytesForPages(40, 4)).build();
        List<EvalSet.Example> set = EvalSet.load("reverse");
        List<String> expected = new ArrayList<>();
        var tokenizer = runtime.tokenizer();
        for (int i = 0; i < 24; i++) {
            expected.add(engine.generate(request(i % 2 == 0 ? "reverse" : null,
                    tokenizer.encode(set.get(i).prompt(), true), SamplingParams.greedy(24))).join().text());
        }
        try (var tight = builder().config(small).build()) {
            List<CompletableFuture<Completion>> futures = new ArrayList<>();
            for (int i = 0; i < 24; i++) {
                futures.add(tight.engine().generate(request(i % 2 == 0 ? "reverse" : null,
                        tokenizer.encode(set.get(i).prompt(), true), SamplingParams.greedy(24))));
            }
            int preempted = 0;
            for (int i = 0; i < 24; i++) {
                Completion c = futures.get(i).join();
                assertThat(c.text()).as("request %d", i).isEqualTo(expected.get(i));
                preempted += c.preemptions();
            }
            assertThat(preempted).as("preemptions happened").isPositive();
            assertThat(tight.engine().stats().preemptions()).isEqualTo(preempted);
            assertNoLeak(tight.engine());
        }
    }

    private static long kvBytesForPages(int pages, int pageSize) {
        var c = runtime.modelConfig();
        return (long) pages * pageSize * 2L * c.numLayers() * c.numKvHeads() * c.headDim() * 4;
    }

    @Test
    void chunkedPrefillOfALongPromptMatchesHf() {
        HfReference ref = HfReference.load();
        Run longest = ref.single().stream().filter(r -> r.adapter() == null)
                .max((x, y) -> Integer.compare(x.promptIds().length, y.promptIds().length)).orElseThrow();
        assertThat(longest.promptIds().length).isGreaterThan(64);
        EngineConfig chunking = EngineConfig.builder().maxBatchTokens(16).maxRunning(4).loraSlots(4).build();
        try (var chunked = builder().config(chunking).build()) {
            Completion c = chunked.engine().generate(request(null, longest.promptIds(),
                    SamplingParams.greedy(ref.maxNewTokens()))).join();
            assertThat(c.tokens()).containsExactly(longest.greedyIds());
            assertNoLeak(chunked.engine());
        }
    }

    @Test
    void sameSeedGivesTheSameSampledOutput() {
        int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);
        SamplingParams p = SamplingParams.builder().temperature(1.3f).topP(0.9f).seed(1234L).maxTokens(20)
                .ignoreEos(true).build();
        Completion first = engine.generate(request("sort", prompt, p)).join();
        Completion second = engine.generate(request("sort", prompt, p)).join();
        Completion other = engine.generate(request("sort", prompt, p.toBuilder().seed(99L).build())).join();
        assertThat(second.tokens()).containsExactly(first.tokens());
        assertThat(first.completionTokens()).isEqualTo(20);
        assertThat(other.tokens()).isNotEqualTo(first.tokens());
    }

    @Test
    void stopStringsMaxTokensAndLogprobs() {
        var tokenizer = runtime.tokenizer();
        EvalSet.Example ex = EvalSet.load("upper").getFirst();
        int[] prompt = tokenizer.encode(ex.prompt(), true);
        String[] words = ex.expected().split(" ");
        Completion stopped = engine.generate(request("upper", prompt, SamplingParams.builder().temperature(0)
                .maxTokens(32).stop(List.of(" " + words[1])).build())).join();
        assertThat(stopped.text().strip()).isEqualTo(words[0]);
        assertThat(stopped.finishReason()).isEqualTo(FinishReason.STOP);
        assertThat(stopped.stopReason()).isEqualTo(" " + words[1]);

        Completion two = engine.generate(request("upper", prompt, SamplingParams.builder().temperature(0)
                .maxTokens(2).logprobs(3).build())).join();
        assertThat(two.completionTokens()).isEqualTo(2);
        assertThat(two.finishReason()).isEqualTo(FinishReason.LENGTH);
        assertThat(two.logprobs()).hasSize(2);
        for (int i = 0; i < 2; i++) {
            TokenLogprob lp = two.logprobs().get(i);
            assertThat(lp.token()).isEqualTo(two.tokens()[i]);
            assertThat(lp.top()).hasSize(3);
            assertThat(lp.top().getFirst().token()).as("greedy picks the top token").isEqualTo(lp.token());
            assertThat(lp.logprob()).isLessThanOrEqualTo(0f);
        }
    }

    @Test
    void cancellingFreesTheRequestAtOnce() throws Exception {
        int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);
        CompletableFuture<Completion> done = new CompletableFuture<>();
        CompletableFuture<Void> firstToken = new CompletableFuture<>();
        GenerationRequest r = request("translate", prompt, SamplingParams.builder().temperature(0).maxTokens(500)
                .ignoreEos(true).build());
        engine.submit(r, new GenerationListener() {
            @Override
            public void onToken(TokenDelta delta) {
                firstToken.complete(null);
            }

            @Override
            public void onFinish(Completion completion) {
                done.complete(completion);
            }

            @Override
            public void onError(EngineException error) {
                done.completeExceptionally(error);
            }
        });
        firstToken.get(10, TimeUnit.SECONDS);
        engine.cancel(r.id());
        Completion c = done.get(10, TimeUnit.SECONDS);
        assertThat(c.finishReason()).isEqualTo(FinishReason.ABORT);
        assertThat(c.completionTokens()).isLessThan(500);
    }

    @Test
    void badRequestsAreRefusedClearlyWhileOthersGoOn() {
        var tokenizer = runtime.tokenizer();
        EvalSet.Example ex = EvalSet.load("sort").get(3);
        int[] prompt = tokenizer.encode(ex.prompt(), true);
        String expected = engine.generate(request("sort", prompt, SamplingParams.greedy(32))).join().text();
        List<CompletableFuture<Completion>> good = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            good.add(engine.generate(request("sort", prompt, SamplingParams.greedy(32))));
        }
        assertThatThrownBy(() -> engine.generate(request("no-such-adapter", prompt, SamplingParams.greedy(4))))
                .isInstanceOfSatisfying(EngineException.class, e -> {
                    assertThat(e.kind()).isEqualTo(EngineException.Kind.NOT_FOUND);
                    assertThat(e.getMessage()).contains("no-such-adapter");
                });
        int[] tooLong = new int[engine.maxModelLen()];
        java.util.Arrays.fill(tooLong, prompt[1]);
        assertThatThrownBy(() -> engine.generate(request(null, tooLong, SamplingParams.greedy(4))))
                .isInstanceOfSatisfying(EngineException.class, e -> {
                    assertThat(e.kind()).isEqualTo(EngineException.Kind.PROMPT_TOO_LONG);
                    assertThat(e.getMessage()).contains(String.valueOf(engine.maxModelLen()));
                });
        assertThatThrownBy(() -> engine.generate(request(null, new int[0], SamplingParams.greedy(4))))
                .isInstanceOf(InvalidRequestException.class).hasMessageContaining("empty");
        assertThatThrownBy(() -> engine.generate(request(null, new int[] {1, 999_999}, SamplingParams.greedy(4))))
                .isInstanceOf(InvalidRequestException.class).hasMessageContaining("999999");
        assertThatThrownBy(() -> engine.generate(request(null, prompt,
                SamplingParams.builder().temperature(0).topP(1.5f).build())))
                .isInstanceOf(InvalidRequestException.class).hasMessageContaining("top_p");
        assertThatThrownBy(() -> engine.generate(request(null, prompt,
                SamplingParams.builder().maxTokens(0).build())))
                .isInstanceOf(InvalidRequestException.class).hasMessageContaining("max_tokens");
        for (CompletableFuture<Completion> f : good) {
            assertThat(f.join().text()).isEqualTo(expected);
        }
    }

    @Test
    void unregisteredAdapterIsRefusedAndItsSlotReclaimed() {
        try (var own = builder().config(EngineConfig.builder().loraSlots(2).build()).build()) {
            Engine e = own.engine();
            int[] prompt = own.tokenizer().encode("input: red apple stone\noutput:", true);
            e.generate(request("upper", prompt, SamplingParams.greedy(8))).join();
            assertThat(e.adapters().unregister("upper")).isTrue();
            assertThatThrownBy(() -> e.generate(request("upper", prompt, SamplingParams.greedy(8))))
                    .isInstanceOfSatisfying(EngineException.class,
                            ex -> assertThat(ex.kind()).isEqualTo(EngineException.Kind.NOT_FOUND));
            // More adapters than slots: slots are reused least recently used first.
            for (String a : List.of("reverse", "translate", "sort", "reverse")) {
                assertThat(e.generate(request(a, prompt, SamplingParams.greedy(8))).join().completionTokens()).isPositive();
            }
            assertThat(e.stats().adapterEvictions()).isGreaterThanOrEqualTo(2);
            assertNoLeak(e);
        }
    }

    @Test
    void shutdownFinishesRunningRequestsWithinTheDeadline() {
        var own = builder().build();
        int[] prompt = own.tokenizer().encode("input: red apple stone\noutput:", true);
        CompletableFuture<Completion> running = own.engine().generate(request("upper", prompt, SamplingParams.greedy(8)));
        own.engine().shutdown(Duration.ofSeconds(10));
        assertThat(running.join().finishReason()).isIn(FinishReason.STOP, FinishReason.LENGTH);
        assertThatThrownBy(() -> own.engine().generate(request(null, prompt, SamplingParams.greedy(2))))
                .isInstanceOfSatisfying(EngineException.class,
                        ex -> assertThat(ex.kind()).isEqualTo(EngineException.Kind.UNAVAILABLE));
        own.close();
    }
}
