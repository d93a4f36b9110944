package ai.punica.cli;

import static ai.punica.cli.RouterTest.frameShapes;
import static ai.punica.cli.RouterTest.post;
import static ai.punica.cli.RouterTest.text;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.cluster.PlacementPolicy;
import ai.punica.router.Router;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * Migration across processes (docs/cluster.md): engine A ({@code punica serve}, a KV pool of 1 MiB, three running
 * requests at most) preempts streams for lack of KV pages and tells the router, which moves them to engine B (a
 * large pool) through {@code /v1/engine/continue}; a router over A alone lets them stay, and they are recomputed on
 * A. Either way every stream is the one an engine with room sends (greedy and seeded), and all KV pages return.
 * The router's queue holds what does not fit and refuses beyond it with 429 in OpenAI's format.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class RouterMigrationTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private static final List<Process> processes = new ArrayList<>();
    /** A thread per blocking call: the common pool may have fewer workers than there are concurrent streams. */
    private static final java.util.concurrent.Executor threads = r -> Thread.ofVirtual().start(r);
    private static URI small;
    private static URI large;
    /** Tokens per stream: two fill A's pool, so three running at once must run out of pages. */
    private static int maxTokens;

    @BeforeAll
    static void startEngines() throws Exception {
        List<CompletableFuture<URI>> started = new ArrayList<>();
        for (String kvMib : List.of("1", "64")) {
            ServeProcess p = ServeProcess.start(List.of(), "--max-running", kvMib.equals("1") ? "3" : "16",
                    "--kv-cache-mib", kvMib);
            processes.add(p.process());
            started.add(p.url());
        }
        small = started.get(0).get(120, TimeUnit.SECONDS);
        large = started.get(1).get(120, TimeUnit.SECONDS);
        JsonNode a = state(small).get("engines").get(0);
        int poolTokens = a.get("kv_pages_total").asInt() * a.get("page_size").asInt();
        maxTokens = poolTokens / 2 - 16;
        assertThat(maxTokens).as("A's pool of %d tokens", poolTokens).isBetween(40, 400);
    }

    @AfterAll
    static void stop() {
        processes.forEach(Process::destroyForcibly);
    }

    private static JsonNode state(URI engine) throws Exception {
        return JSON.readTree(http.send(HttpRequest.newBuilder(engine.resolve("/v1/engine/state")).GET().build(),
                HttpResponse.BodyHandlers.ofString()).body());
    }

    private static Router router(List<URI> engines, int queue) {
        return new Router(new Router.Config(engines, null, new PlacementPolicy.Consolidate(), Duration.ofMillis(50),
                "127.0.0.1", 0, queue, Duration.ofSeconds(120), true)).start();
    }

    /** Stream i: greedy when even, seeded sampling when odd; two adapters and the base model. */
    private static String stream(int i) {
        String model = List.of("sort", "punica-demo", "upper").get(i % 3);
        String sampling = i % 2 == 0 ? "\"temperature\":0" : "\"temperature\":1.0,\"top_p\":0.95,\"seed\":" + (70 + i);
        return "{\"model\":\"" + model + "\",\"prompt\":\"input: red apple stone blue\\noutput:\",\"max_tokens\":"
                + maxTokens + "," + sampling + ",\"ignore_eos\":true,\"stream\":true}";
    }

    /** The streams as the large engine sends them, never short of pages: what every routed stream must equal. */
    private static List<String> unmigrated(int n) throws Exception {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(post(large, "/v1/completions", stream(i)).body());
        }
        return out;
    }

    /** One short request per model on {@code engine}, so that its state lists the streams' adapters as resident. */
    private static void makeAdaptersResident(URI engine) throws Exception {
        for (String model : List.of("sort", "upper")) {
            HttpResponse<String> r = post(engine, "/v1/completions", "{\"model\":\"" + model
                    + "\",\"prompt\":\"input: red\\noutput:\",\"max_tokens\":1}");
            assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        }
    }

    /** Sends n streams through the router at once and returns their bodies. */
    private static List<String> routed(Router router, int n) throws Exception {
        URI base = URI.create("http://127.0.0.1:" + router.port());
        List<CompletableFuture<String>> bodies = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            String body = stream(i);
            bodies.add(CompletableFuture.supplyAsync(() -> {
                try {
                    HttpResponse<String> r = post(base, "/v1/completions", body);
                    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
                    return r.body();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }, threads));
            Thread.sleep(20); // arrival order = placement order
        }
        List<String> out = new ArrayList<>();
        for (CompletableFuture<String> f : bodies) {
            out.add(f.get(300, TimeUnit.SECONDS));
        }
        return out;
    }

    private static void assertSameStreams(List<String> got, List<String> want) throws Exception {
        for (int i = 0; i < want.size(); i++) {
            assertThat(got.get(i)).as("stream %d", i).doesNotContain(": tokens").doesNotContain("punica.preempted");
            assertThat(text(got.get(i))).as("stream %d", i).isEqualTo(text(want.get(i)));
            assertThat(frameShapes(got.get(i))).as("stream %d", i).isEqualTo(frameShapes(want.get(i)));
        }
    }

    /** No request left on either engine, and every KV page free. */
    private static void assertPagesReturned() throws Exception {
        for (URI engine : List.of(small, large)) {
            JsonNode e = null;
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (System.nanoTime() < end) {
                e = state(engine).get("engines").get(0);
                if (e.get("running").asInt() == 0 && e.get("waiting").asInt() == 0
                        && e.get("free_kv_pages").asInt() == e.get("kv_pages_total").asInt()) {
                    break;
                }
                Thread.sleep(20);
            }
            assertThat(e.get("running").asInt() + e.get("waiting").asInt()).as("requests on %s", engine).isZero();
            assertThat(e.get("free_kv_pages").asInt()).as("free KV pages on %s", engine)
                    .isEqualTo(e.get("kv_pages_total").asInt());
        }
    }

    private static double metric(URI engine, String name) throws Exception {
        String metrics = http.send(HttpRequest.newBuilder(engine.resolve("/metrics")).GET().build(),
                HttpResponse.BodyHandlers.ofString()).body();
        Matcher m = Pattern.compile("(?m)^" + Pattern.quote(name) + "(\\{[^}]*})? (\\S+)").matcher(metrics);
        double sum = 0;
        while (m.find()) {
            sum += Double.parseDouble(m.group(2));
        }
        return sum;
    }

    /** Requests the engine finished for {@code reason} ("length", "abort", ...), as vllm:request_success_total counts. */
    private static double finished(URI engine, String reason) throws Exception {
        String metrics = http.send(HttpRequest.newBuilder(engine.resolve("/metrics")).GET().build(),
                HttpResponse.BodyHandlers.ofString()).body();
        Matcher m = Pattern.compile("(?m)^vllm:request_success_total\\{[^}]*finished_reason=\"" + reason
                + "\"[^}]*} (\\S+)").matcher(metrics);
        double sum = 0;
        while (m.find()) {
            sum += Double.parseDouble(m.group(1));
        }
        return sum;
    }

    /** Finished requests of either engine. */
    private static double finishedOnBoth(String reason) throws Exception {
        return finished(small, reason) + finished(large, reason);
    }

    @Test
    @Order(1)
    void streamsPreemptedOnOneEngineMoveToAnotherWithTheirOutput() throws Exception {
        int n = 6; // three on A (its running limit), three on B
        List<String> want = unmigrated(n);
        // unmigrated() left the adapters resident on B, and consolidate breaks its first tie (0 running each) toward
        // the engine that has the request's adapter: without this, every stream went to B and nothing could move.
        makeAdaptersResident(small);
        double lengthBefore = finishedOnBoth("length");
        double abortedBefore = finishedOnBoth("abort");
        double preemptionsBefore = metric(small, "vllm:num_preemptions_total");
        try (Router router = router(List.of(small, large), 16)) {
            Thread.sleep(300); // the router's first polls of both engines' states (every 50 ms)
            List<String> got = routed(router, n);
            assertSameStreams(got, want);
            String routerState = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + router.port()
                    + "/v1/router/state")).GET().build(), HttpResponse.BodyHandlers.ofString()).body();
            assertThat(router.migrations()).as("streams moved off A; router: %s; A's preemptions: %s", routerState,
                    metric(small, "vllm:num_preemptions_total") - preemptionsBefore).isPositive();
            assertThat(router.failovers()).isZero();
            assertPagesReturned();
            // A let each preempted request go with its stream: the router moved it or brought it back, and every
            // request ran to its end exactly once, none dropped or run twice.
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            double handedOut = 0;
            while (System.nanoTime() < end) {
                handedOut = metric(small, "vllm:num_preemptions_total") - preemptionsBefore;
                if (handedOut == router.migrations() + router.migrationsDeclined()) {
                    break;
                }
                Thread.sleep(20);
            }
            assertThat(handedOut).as("A's preemptions = moves + returns; router: %s", routerState)
                    .isEqualTo((double) (router.migrations() + router.migrationsDeclined()));
            assertThat(finishedOnBoth("length") - lengthBefore).as("requests finished on A and B").isEqualTo(n);
            assertThat(finishedOnBoth("abort") - abortedBefore).as("requests aborted on A and B").isZero();
        }
    }

    @Test
    @Order(2)
    void withNoOtherEngineThePreemptedStreamsStayAndFinishThere() throws Exception {
        int n = 3;
        List<String> want = unmigrated(n);
        double lengthBefore = finished(small, "length");
        double abortedBefore = finished(small, "abort");
        try (Router router = router(List.of(small), 16)) {
            List<String> got = routed(router, n);
            assertSameStreams(got, want);
            assertThat(router.migrations()).isZero();
            assertThat(router.migrationsDeclined()).as("preemptions the router brought back to A").isPositive();
            assertPagesReturned();
            assertThat(finished(small, "length") - lengthBefore).as("requests finished on A").isEqualTo(n);
            assertThat(finished(small, "abort") - abortedBefore).as("requests aborted on A").isZero();
        }
    }

    @Test
    @Order(3)
    void theRouterQueuesWhatDoesNotFitAndRefusesBeyondItsQueue() throws Exception {
        int n = 5; // three run on A, two wait in the router's queue of two
        List<String> want = unmigrated(n);
        try (Router router = router(List.of(small), 2)) {
            URI base = URI.create("http://127.0.0.1:" + router.port());
            CompletableFuture<List<String>> got = CompletableFuture.supplyAsync(() -> {
                try {
                    return routed(router, n);
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }, threads);
            String metrics = "";
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < end && !metrics.contains("punica_router_queue_length 2")) {
                metrics = getMetrics(base);
                Thread.sleep(10);
            }
            assertThat(metrics).contains("punica_router_queue_length 2");
            HttpResponse<String> refused = post(base, "/v1/completions", stream(0));
            assertThat(refused.statusCode()).isEqualTo(429);
            assertThat(refused.headers().firstValue("retry-after")).hasValue("1");
            JsonNode error = JSON.readTree(refused.body()).get("error");
            assertThat(error.get("type").asText()).isEqualTo("rate_limit_error");
            assertThat(error.get("code").asText()).isEqualTo("rate_limit_exceeded");
            assertThat(error.get("message").asText()).contains("2 requests are waiting");
            assertSameStreams(got.get(300, TimeUnit.SECONDS), want);
            metrics = getMetrics(base);
            assertThat(metrics).contains("punica_router_queue_length 0")
                    .contains("punica_router_queued_total 2")
                    .contains("punica_router_queue_refusals_total{reason=\"full\"} 1");
            JsonNode state = JSON.readTree(http.send(HttpRequest.newBuilder(base.resolve("/v1/router/state")).GET()
                    .build(), HttpResponse.BodyHandlers.ofString()).body());
            assertThat(state.get("queue_refusals").asInt()).isEqualTo(1);
            assertPagesReturned();
        }
    }

    private static String getMetrics(URI base) throws Exception {
        return http.send(HttpRequest.newBuilder(base.resolve("/metrics")).GET().build(),
                HttpResponse.BodyHandlers.ofString()).body();
    }
}
