package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.lora.AdapterOptions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Admission under adapter pressure: at most max_loras distinct adapters run at once, a rarely used adapter
 * is not passed over for ever by popular ones, and vllm:lora_requests_info's running and waiting sets are
 * exact whenever a client hears from the engine.
 */
class AdapterAdmissionTest {
    private static final List<String> SKILLS = List.of("upper", "reverse", "translate", "sort");
    private static final Map<String, String> ANSWERS = Map.of("upper", "RED APPLE STONE", "reverse",
            "stone apple red", "sort", "apple red stone");
    private static final String PROMPT = "input: red apple stone\noutput:";

    private static EngineBuilder.Runtime engine(int slots, AdapterOptions options) {
        EngineBuilder b = new EngineBuilder().model(Fixtures.model()).backend("cpu")
                .config(EngineConfig.builder().loraSlots(slots).build()).adapterOptions(options);
        for (String s : SKILLS) {
            b.adapter(s, Fixtures.adapter(s));
        }
        return b.build();
    }

    @Test
    void noMoreThanMaxLorasDistinctAdaptersRunAtOnceAndAnswersStayRight() throws Exception {
        try (var runtime = engine(4, AdapterOptions.defaults().withMaxLoras(2))) {
            Engine engine = runtime.engine();
            int[] prompt = runtime.tokenizer().encode(PROMPT, true);
            AtomicInteger widest = new AtomicInteger();
            List<CompletableFuture<Completion>> all = new ArrayList<>();
            for (int i = 0; i < 16; i++) {
                String adapter = List.of("upper", "reverse", "sort").get(i % 3);
                all.add(engine.generate(new GenerationRequest("q" + i, adapter, prompt, SamplingParams.greedy(16))));
            }
            while (!all.stream().allMatch(CompletableFuture::isDone)) {
                widest.accumulateAndGet(engine.callOnEngineThread(() -> engine.stats().runningAdapters().size()),
                        Math::max);
            }
            for (CompletableFuture<Completion> f : all) {
                Completion c = f.join();
                assertThat(c.text().strip()).as(c.adapter()).isEqualTo(ANSWERS.get(c.adapter()));
            }
            assertThat(widest.get()).isEqualTo(2);
        }
    }

    @Test
    void aRareAdapterRunsWhileAPopularOneKeepsArriving() throws Exception {
        // One adapter per step: a request for another must wait until the popular adapter has no request
        // running, which with requests for it always arriving never happens without the starvation limit.
        var options = AdapterOptions.defaults().withMaxLoras(1).withStarvationLimit(Duration.ofMillis(100));
        try (var runtime = engine(4, options)) {
            Engine engine = runtime.engine();
            int[] prompt = runtime.tokenizer().encode(PROMPT, true);
            int popularLimit = 60;
            AtomicInteger popularSubmitted = new AtomicInteger();
            SplittableRandom lengths = new SplittableRandom(3);
            // Six requests for "upper" of assorted lengths in flight all the time (so they do not all end in
            // one step): whenever one finishes, another arrives, until the limit.
            Runnable[] feed = new Runnable[1];
            feed[0] = () -> {
                int n = popularSubmitted.incrementAndGet();
                if (n > popularLimit) {
                    return;
                }
                int tokens;
                synchronized (lengths) {
                    tokens = 4 + lengths.nextInt(12);
                }
                engine.generate(new GenerationRequest("p" + n, "upper", prompt, SamplingParams.greedy(tokens)))
                        .whenComplete((c, e) -> feed[0].run());
            };
            for (int i = 0; i < 6; i++) {
                feed[0].run();
            }
            Completion rare = engine.generate(new GenerationRequest("rare", "sort", prompt,
                    SamplingParams.greedy(16))).join();
            int submittedWhenRareFinished = popularSubmitted.get();
            popularSubmitted.set(popularLimit); // stop feeding
            assertThat(rare.text().strip()).isEqualTo("apple red stone");
            assertThat(submittedWhenRareFinished).as("popular requests sent before the rare one finished")
                    .isLessThan(popularLimit);
        }
    }

    @Test
    void loraRequestSetsAreExactAtEveryEventUnderChurn() throws Exception {
        try (var runtime = engine(2, AdapterOptions.defaults().withMaxLoras(2))) {
            Engine engine = runtime.engine();
            int[] prompt = runtime.tokenizer().encode(PROMPT, true);
            Map<String, Integer> outstanding = new HashMap<>();
            ConcurrentLinkedQueue<String> mismatches = new ConcurrentLinkedQueue<>();
            CountDownLatch release = new CountDownLatch(1);
            CountDownLatch engineHeld = new CountDownLatch(1);
            Thread holder = Thread.ofPlatform().start(() -> engine.callOnEngineThread(() -> {
                engineHeld.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                return null;
            }));
            engineHeld.await();

            SplittableRandom random = new SplittableRandom(5);
            int requests = 48;
            CountDownLatch ended = new CountDownLatch(requests);
            List<String> ids = new ArrayList<>();
            for (int i = 0; i < requests; i++) {
                String adapter = i % 5 == 4 ? null : SKILLS.get(random.nextInt(SKILLS.size()));
                String id = "c" + i;
                ids.add(id);
                synchronized (outstanding) {
                    if (adapter != null) {
                        outstanding.merge(adapter, 1, Integer::sum);
                    }
                }
                engine.submit(new GenerationRequest(id, adapter, prompt, SamplingParams.greedy(1 + random.nextInt(12))),
                        new GenerationListener() {
                            @Override
                            public void onToken(TokenDelta delta) {
                                check(engine, outstanding, mismatches, "token of " + id);
                            }

                            @Override
                            public void onFinish(Completion completion) {
                                end();
                            }

                            @Override
                            public void onError(EngineException error) {
                                end();
                            }

                            private void end() {
                                synchronized (outstanding) {
                                    if (adapter != null) {
                                        outstanding.computeIfPresent(adapter, (k, n) -> n == 1 ? null : n - 1);
                                    }
                                }
                                check(engine, outstanding, mismatches, "end of " + id);
                                ended.countDown();
                            }
                        });
            }
            // Held engine: every request is still in the inbox, and already counts as waiting.
            Set<String> expected;
            synchronized (outstanding) {
                expected = new TreeSet<>(outstanding.keySet());
            }
            assertThat(engine.stats().waitingAdapters()).isEqualTo(expected);
            assertThat(engine.stats().runningAdapters()).isEmpty();
            release.countDown();
            holder.join();
            for (int i = 0; i < 10; i++) {
                Thread.sleep(random.nextInt(15));
                engine.cancel(ids.get(random.nextInt(ids.size())));
            }
            ended.await();
            assertThat(mismatches).isEmpty();
            EngineStats last = engine.callOnEngineThread(engine::stats);
            assertThat(last.runningAdapters()).isEmpty();
            assertThat(last.waitingAdapters()).isEmpty();
            assertThat(last.running() + last.waiting()).isZero();
        }
    }

    @Test
    void adaptersOfWaitingRequestsAreReadIntoHostMemoryBeforeTheirTurn() throws Exception {
        EngineBuilder b = new EngineBuilder().model(Fixtures.model()).backend("cpu")
                .config(EngineConfig.builder().loraSlots(2).maxRunning(1).build());
        for (String s : SKILLS) {
            b.adapter(s, Fixtures.adapter(s));
        }
        try (var runtime = b.build()) {
            Engine engine = runtime.engine();
            int[] prompt = runtime.tokenizer().encode(PROMPT, true);
            SamplingParams longRun = SamplingParams.builder().temperature(0).maxTokens(200).ignoreEos(true).build();
            CompletableFuture<Completion> first = engine.generate(new GenerationRequest("first", "upper", prompt,
                    longRun));
            CompletableFuture<Completion> second = engine.generate(new GenerationRequest("second", "reverse", prompt,
                    SamplingParams.greedy(16)));
            CompletableFuture<Completion> third = engine.generate(new GenerationRequest("third", "sort", prompt,
                    SamplingParams.greedy(16)));
            // One request runs at a time: the other two wait, and their adapters are read meanwhile.
            while (!runtime.adapters().hostCached().containsAll(List.of("reverse", "sort")) && !first.isDone()) {
                Thread.sleep(5);
            }
            assertThat(first).as("the first request was still running when both were prefetched").isNotDone();
            assertThat(runtime.adapters().hostCached()).contains("reverse", "sort");
            assertThat(second.join().text().strip()).isEqualTo("stone apple red");
            assertThat(third.join().text().strip()).isEqualTo("apple red stone");
            first.join();
        }
    }

    /** On the engine thread: running ∪ waiting must be exactly the adapters with unfinished requests. */
    private static void check(Engine engine, Map<String, Integer> outstanding, ConcurrentLinkedQueue<String> mismatches,
            String when) {
        EngineStats s = engine.stats();
        Set<String> shown = new TreeSet<>(s.runningAdapters());
        shown.addAll(s.waitingAdapters());
        Set<String> expected;
        synchronized (outstanding) {
            expected = new TreeSet<>(outstanding.keySet());
        }
        if (!shown.equals(expected)) {
            mismatches.add(when + ": shown " + shown + ", unfinished " + expected);
        }
        if (s.runningAdapters().size() > 2) {
            mismatches.add(when + ": running " + s.runningAdapters() + " exceeds max_loras 2");
        }
    }
}
