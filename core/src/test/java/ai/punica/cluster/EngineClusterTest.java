package ai.punica.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.EvalSet;
import ai.punica.Fixtures;
import ai.punica.engine.Completion;
import ai.punica.engine.Continuation;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.EngineException;
import ai.punica.engine.FinishReason;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.engine.TokenDelta;
import ai.punica.tokenizer.Tokenizer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntFunction;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Three CPU engines on the demo model behind one {@link EngineCluster}: placement follows the policy as load
 * rises and falls, and requests that move between engines when KV pages run out produce exactly the output
 * they produce on one engine that never runs out.
 */
class EngineClusterTest {
    private static final AtomicInteger ids = new AtomicInteger();
    /** One engine with room for everything: the unmigrated run every migrated output is compared with. */
    private static EngineBuilder.Runtime roomy;
    private static Tokenizer tokenizer;

    @BeforeAll
    static void start() {
        roomy = builder().config(EngineConfig.builder().maxBatchTokens(256).maxRunning(32).loraSlots(4).build()).build();
        tokenizer = roomy.tokenizer();
    }

    @AfterAll
    static void stop() {
        roomy.close();
    }

    static EngineBuilder builder() {
        EngineBuilder b = new EngineBuilder().model(Fixtures.model()).backend("cpu");
        for (String skill : EvalSet.SKILLS) {
            if (EvalSet.adapterFor(skill) != null) {
                b.adapter(skill, Fixtures.adapter(skill));
            }
        }
        return b;
    }

    /** Three engines, each with its own KV pool of {@code pages} pages of 4 tokens. */
    private static List<EngineBuilder.Runtime> engines(int pages, int maxRunning) {
        var c = roomy.modelConfig();
        long bytes = (long) pages * 4 * 2L * c.numLayers() * c.numKvHeads() * c.headDim() * 4;
        EngineConfig config = EngineConfig.builder().maxBatchTokens(64).maxRunning(maxRunning).pageSize(4)
                .loraSlots(4).kvCacheBytes(bytes).build();
        List<EngineBuilder.Runtime> out = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            out.add(builder().config(config).build());
        }
        return out;
    }

    private static EngineCluster cluster(List<EngineBuilder.Runtime> runtimes, PlacementPolicy policy, int queue) {
        return EngineCluster.local(runtimes.stream().map(EngineBuilder.Runtime::engine).toList(),
                new EngineCluster.Config(policy, queue, Duration.ofMillis(50)));
    }

    private static void close(EngineCluster cluster, List<EngineBuilder.Runtime> runtimes) {
        cluster.close();
        runtimes.forEach(EngineBuilder.Runtime::close);
    }

    private static GenerationRequest request(String adapter, String prompt, SamplingParams params) {
        return new GenerationRequest("c-" + ids.incrementAndGet(), adapter, tokenizer.encode(prompt, true), params);
    }

    /** Collects a request's stream: the text of every delta, the tokens in the order they came, the end. */
    private static final class Stream {
        final StringBuilder text = new StringBuilder();
        final List<Integer> tokens = new ArrayList<>();
        final CompletableFuture<Completion> done = new CompletableFuture<>();
        final GenerationListener listener = GenerationListener.completing(done, this::onToken);

        private synchronized void onToken(TokenDelta delta) {
            text.append(delta.text());
            if (delta.token() >= 0) {
                tokens.add(delta.token());
            }
        }
    }

    /** Requests on each engine, as the scheduler counts them. */
    private static List<Integer> occupancy(EngineCluster cluster) {
        return cluster.snapshot().engines().stream().map(EngineCluster.EngineView::requests).toList();
    }

    private static void awaitOccupancy(EngineCluster cluster, List<Integer> expected) {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < end && !occupancy(cluster).equals(expected)) {
            Thread.onSpinWait();
        }
        assertThat(occupancy(cluster)).isEqualTo(expected);
    }

    /** Every engine back to nothing: no request, no KV page, no pinned adapter slot. */
    private static long movedOut(EngineCluster.Snapshot snap) {
        return snap.engines().stream().mapToLong(e -> e.load().migrationsOut()).sum();
    }

    private static long kvMigrations(EngineCluster.Snapshot snap) {
        return snap.migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED);
    }

    private static void assertNothingHeld(List<EngineBuilder.Runtime> runtimes) {
        for (EngineBuilder.Runtime r : runtimes) {
            Engine e = r.engine();
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (System.nanoTime() < end && (e.stats().running() > 0 || e.stats().waiting() > 0
                    || e.stats().kvPagesUsed() > 0)) {
                Thread.onSpinWait();
            }
            assertThat(e.liveRequestIds()).as("live requests").isEmpty();
            assertThat(e.callOnEngineThread(() -> e.stats().kvPagesUsed())).as("KV pages in use").isZero();
            assertThat(e.callOnEngineThread(() -> e.adapters().pinnedSlots())).as("pinned adapter slots").isZero();
        }
    }

    /**
     * Load rises to ten long requests and falls back to none. Consolidate fills engine 0 to its four running
     * slots before engine 1 gets one: ceil(n / 4) engines are busy at every step up and down. Least-loaded,
     * run through the same script, has every engine busy as soon as three requests run.
     */
    @Test
    void occupancyFollowsThePolicyAsLoadRisesAndFalls() {
        for (PlacementPolicy policy : List.of(new PlacementPolicy.Consolidate(), new PlacementPolicy.LeastLoaded())) {
            List<EngineBuilder.Runtime> runtimes = engines(1024, 4);
            EngineCluster cluster = cluster(runtimes, policy, 16);
            IntFunction<List<Integer>> expected = n -> policy instanceof PlacementPolicy.Consolidate
                    ? List.of(Math.min(n, 4), Math.clamp(n - 4, 0, 4), Math.clamp(n - 8, 0, 4))
                    : List.of((n + 2) / 3, (n + 1) / 3, n / 3);
            try {
                SamplingParams longRun = SamplingParams.builder().temperature(0).maxTokens(900).ignoreEos(true)
                        .build();
                List<GenerationRequest> live = new ArrayList<>();
                List<Stream> streams = new ArrayList<>();
                for (int n = 1; n <= 10; n++) {
                    // Base-model requests only: a tie between engines goes to one that holds the request's adapter,
                    // and an engine publishes its resident adapters after its next step, so with adapters the
                    // least-loaded ties would depend on timing (PlacementPolicyTest checks that rule).
                    var r = request(null, "input: red apple stone\noutput:", longRun);
                    Stream s = new Stream();
                    cluster.submit(r, s.listener);
                    live.add(r);
                    streams.add(s);
                    assertThat(occupancy(cluster)).as("%s, %d requests", policy.name(), n)
                            .isEqualTo(expected.apply(n));
                }
                for (int n = 9; n >= 0; n--) { // the newest leaves first
                    cluster.cancel(live.remove(n).id());
                    awaitOccupancy(cluster, expected.apply(n));
                }
                for (Stream s : streams) {
                    assertThat(s.done.join().finishReason()).isEqualTo(FinishReason.ABORT);
                }
                assertThat(cluster.snapshot().busyEngines()).isZero();
                assertNothingHeld(runtimes);
            } finally {
                close(cluster, runtimes);
            }
        }
    }

    /**
     * KV pools of 40 pages of 4 tokens: 24 requests cannot fit on one engine, so engines run out of pages
     * and hand their newest request to another engine. Each migrated request's tokens and streamed text equal
     * its run on an engine that never runs out, greedy and with seeded sampling.
     */
    @Test
    void migratedRequestsProduceTheirUnmigratedOutput() {
        List<EvalSet.Example> set = EvalSet.load("reverse");
        for (boolean sampled : List.of(false, true)) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < 24; i++) {
                SamplingParams p = sampled
                        ? SamplingParams.builder().temperature(1.0f).topP(0.95f).seed(1000L + i).maxTokens(24)
                                .logprobs(1).build()
                        : SamplingParams.greedy(24);
                requests.add(request(i % 2 == 0 ? "reverse" : null, set.get(i).prompt(), p));
            }
            List<Completion> expected = new ArrayList<>();
            for (GenerationRequest r : requests) {
                expected.add(roomy.engine().generate(r).join());
            }
            List<EngineBuilder.Runtime> runtimes = engines(40, 16);
            EngineCluster cluster = cluster(runtimes, new PlacementPolicy.Consolidate(), 64);
            try {
                List<Stream> streams = new ArrayList<>();
                for (GenerationRequest r : requests) {
                    Stream s = new Stream();
                    cluster.submit(r, s.listener);
                    streams.add(s);
                }
                for (int i = 0; i < requests.size(); i++) {
                    Completion want = expected.get(i);
                    Stream s = streams.get(i);
                    Completion got = s.done.join();
                    String what = (sampled ? "sampled" : "greedy") + " request " + i;
                    assertThat(got.tokens()).as(what).containsExactly(want.tokens());
                    assertThat(got.text()).as(what).isEqualTo(want.text());
                    assertThat(s.text.toString()).as(what + ", streamed").isEqualTo(want.text());
                    assertThat(s.tokens).as(what + ", streamed tokens").containsExactly(
                            java.util.Arrays.stream(want.tokens()).boxed().toArray(Integer[]::new));
                    assertThat(got.logprobs()).as(what + ", logprobs").hasSize(want.logprobs().size());
                }
                assertNothingHeld(runtimes);
                // Each engine publishes its count of requests moved out after the step that moved them: wait for it.
                EngineCluster.Snapshot snap = cluster.snapshot();
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (System.nanoTime() < end && movedOut(snap) != kvMigrations(snap)) {
                    Thread.onSpinWait();
                    snap = cluster.snapshot();
                }
                assertThat(kvMigrations(snap)).as("migrations").isPositive();
                assertThat(movedOut(snap)).as("requests the engines moved out").isEqualTo(kvMigrations(snap));
                assertThat(snap.queued()).isZero();
            } finally {
                close(cluster, runtimes);
            }
        }
    }

    /**
     * A continuation is refused (OVERLOADED) when no engine has room, so that a router tries another server; but one
     * that a router brings back after this process handed it over on preemption waits on an engine, as a preempted
     * request does, and produces its uninterrupted output once room frees up.
     */
    @Test
    void aPreemptedRequestBroughtBackWaitsWhereAFreshContinuationIsRefused() {
        List<EvalSet.Example> set = EvalSet.load("reverse");
        List<EngineBuilder.Runtime> runtimes = engines(1024, 1);
        EngineCluster cluster = cluster(runtimes, new PlacementPolicy.Consolidate(), 4);
        try {
            List<GenerationRequest> busy = new ArrayList<>();
            for (int i = 0; i < 3; i++) { // one running request fills each engine
                GenerationRequest r = request(null, set.get(i).prompt(),
                        SamplingParams.builder().maxTokens(400).ignoreEos(true).build());
                cluster.submit(r, new Stream().listener);
                busy.add(r);
            }
            GenerationRequest r = request("reverse", set.get(5).prompt(), SamplingParams.greedy(24));
            Completion whole = roomy.engine().generate(r).join();
            int cut = Math.min(5, whole.tokens().length - 1);
            Continuation c = new Continuation(r.id(), r.adapter(), r.promptTokens(),
                    java.util.Arrays.copyOf(whole.tokens(), cut), r.params(), 0, 0, List.of());
            assertThatThrownBy(() -> cluster.resume(c, new Stream().listener))
                    .isInstanceOfSatisfying(EngineException.class,
                            e -> assertThat(e.kind()).isEqualTo(EngineException.Kind.OVERLOADED));
            Stream back = new Stream();
            cluster.resume(c, back.listener, true);
            busy.forEach(b -> cluster.cancel(b.id()));
            Completion got = back.done.join();
            assertThat(got.tokens()).containsExactly(whole.tokens());
            assertThat(got.text()).isEqualTo(whole.text());
            assertThat(whole.text()).endsWith(back.text.toString());
            assertNothingHeld(runtimes);
        } finally {
            close(cluster, runtimes);
        }
    }

    /**
     * Active consolidation: twelve requests fill the three engines (four running slots each); all but the first on
     * each engine leave (cancelled), so one request is left on each engine, below the threshold of two, and the
     * engines hand them over to a busier engine with room until one engine holds all three and two are empty (to
     * be released). Every moved request produces its unmigrated output, greedy and with seeded sampling.
     */
    @Test
    void requestsOfEnginesBelowTheThresholdGatherOnFewerEngines() {
        for (boolean sampled : List.of(false, true)) {
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < 12; i++) {
                SamplingParams.Builder p = SamplingParams.builder().maxTokens(200).ignoreEos(true);
                p = sampled ? p.temperature(1.0f).topP(0.95f).seed(500L + i) : p.temperature(0);
                requests.add(request(i % 3 == 0 ? "sort" : null, "input: red apple stone blue\noutput:", p.build()));
            }
            List<Completion> expected = new ArrayList<>();
            for (int i = 0; i < 12; i += 4) {
                expected.add(roomy.engine().generate(requests.get(i)).join());
            }
            List<EngineBuilder.Runtime> runtimes = engines(1024, 4);
            EngineCluster cluster = EngineCluster.local(runtimes.stream().map(EngineBuilder.Runtime::engine).toList(),
                    new EngineCluster.Config(new PlacementPolicy.Consolidate(), 16, Duration.ofMillis(50))
                            .consolidatingBelow(2, Duration.ofMillis(20)));
            try {
                List<Stream> streams = new ArrayList<>();
                for (GenerationRequest r : requests) {
                    Stream s = new Stream();
                    cluster.submit(r, s.listener);
                    streams.add(s);
                }
                assertThat(occupancy(cluster)).isEqualTo(List.of(4, 4, 4));
                for (int i = 0; i < 12; i++) {
                    if (i % 4 != 0) {
                        cluster.cancel(requests.get(i).id());
                    }
                }
                long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (System.nanoTime() < end && !occupancy(cluster).stream().sorted().toList()
                        .equals(List.of(0, 0, 3))) {
                    Thread.onSpinWait();
                }
                assertThat(occupancy(cluster).stream().sorted().toList()).as("the three left gathered")
                        .isEqualTo(List.of(0, 0, 3));
                for (int k = 0; k < 3; k++) {
                    Completion want = expected.get(k);
                    Stream s = streams.get(4 * k);
                    Completion got = s.done.join();
                    String what = (sampled ? "sampled" : "greedy") + " request " + 4 * k;
                    assertThat(got.tokens()).as(what).containsExactly(want.tokens());
                    assertThat(s.text.toString()).as(what + ", streamed").isEqualTo(want.text());
                }
                EngineCluster.Snapshot snap = cluster.snapshot();
                assertThat(snap.migrations().get(EngineCluster.MigrationReason.CONSOLIDATE)).as("consolidations")
                        .isEqualTo(2);
                assertThat(snap.migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED)).isZero();
                assertNothingHeld(runtimes);
            } finally {
                close(cluster, runtimes);
            }
        }
    }

    /** Beyond the queue, a request is refused at once as OVERLOADED (the server's 429); nothing else changes. */
    @Test
    void requestsBeyondTheQueueAreRefused() {
        List<EngineBuilder.Runtime> runtimes = engines(1024, 1);
        EngineCluster cluster = cluster(runtimes, new PlacementPolicy.Consolidate(), 2);
        try {
            SamplingParams longRun = SamplingParams.builder().temperature(0).maxTokens(900).ignoreEos(true).build();
            List<GenerationRequest> accepted = new ArrayList<>();
            List<Stream> streams = new ArrayList<>();
            for (int i = 0; i < 5; i++) { // three running (one per engine), two queued
                var r = request(null, "input: a b\noutput:", longRun);
                Stream s = new Stream();
                cluster.submit(r, s.listener);
                accepted.add(r);
                streams.add(s);
            }
            assertThat(cluster.snapshot().queued()).isEqualTo(2);
            assertThatThrownBy(() -> cluster.submit(request(null, "input: a b\noutput:", longRun), new Stream().listener))
                    .isInstanceOfSatisfying(EngineException.class,
                            e -> assertThat(e.kind()).isEqualTo(EngineException.Kind.OVERLOADED))
                    .hasMessageContaining("all 3 engines are full and 2 requests are waiting");
            assertThat(cluster.snapshot().queueRefusals()).isEqualTo(1);
            // A queued request cancelled leaves the queue; the first running one cancelled lets the next in.
            cluster.cancel(accepted.get(4).id());
            assertThat(streams.get(4).done.join().finishReason()).isEqualTo(FinishReason.ABORT);
            assertThat(cluster.snapshot().queued()).isEqualTo(1);
            cluster.cancel(accepted.get(0).id());
            assertThat(streams.get(0).done.join().finishReason()).isEqualTo(FinishReason.ABORT);
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (System.nanoTime() < end && cluster.snapshot().queued() > 0) {
                Thread.onSpinWait();
            }
            assertThat(cluster.snapshot().queued()).isZero();
            assertThat(occupancy(cluster)).isEqualTo(List.of(1, 1, 1));
            for (int i = 1; i < 4; i++) {
                cluster.cancel(accepted.get(i).id());
            }
            awaitOccupancy(cluster, List.of(0, 0, 0));
            assertNothingHeld(runtimes);
        } finally {
            close(cluster, runtimes);
        }
    }

    /** A bad request is refused on the caller's thread as one engine refuses it, and takes no place. */
    @Test
    void badRequestsAreRefusedAtOnce() {
        List<EngineBuilder.Runtime> runtimes = engines(64, 4);
        EngineCluster cluster = cluster(runtimes, new PlacementPolicy.Consolidate(), 4);
        try {
            assertThatThrownBy(() -> cluster.submit(new GenerationRequest("bad-1", null, new int[] {1, 5000},
                    SamplingParams.greedy(4)), new Stream().listener)).hasMessageContaining("token id 5000 at position 1");
            assertThatThrownBy(() -> cluster.submit(new GenerationRequest("bad-2", "nope", new int[] {1, 5},
                    SamplingParams.greedy(4)), new Stream().listener)).hasMessageContaining("`nope` does not exist");
            assertThat(occupancy(cluster)).isEqualTo(List.of(0, 0, 0));
            assertNothingHeld(runtimes);
        } finally {
            close(cluster, runtimes);
        }
    }
}
