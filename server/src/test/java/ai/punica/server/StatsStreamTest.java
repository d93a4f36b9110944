package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.function.Predicate;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code GET /stats/stream} on its own, as a client reads it: named Server-Sent Events ({@code hello}, then
 * {@code step} per engine step and {@code engine} every second), each step's adapter segments, and
 * {@code GET /v1/adapters} and the console's files beside it.
 */
class StatsStreamTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "stats-test-key";
    static final String PROMPT = "input: red apple stone\\noutput:";
    /** The prompt's length in the fixture tokenizer (the README's usage block). */
    private static final int PROMPT_TOKENS = 9;

    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;
    private static final HttpClient CLIENT = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> b.apiKey(KEY));
        http = new Http(server, KEY);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    record Event(String name, JsonNode data) {
    }

    /** An open stream, read event by event; closing it disconnects. */
    static final class Events implements AutoCloseable {
        private final Stream<String> lines;
        private final Iterator<String> it;
        final int status;
        final String contentType;

        Events(String baseUrl, String query) {
            try {
                HttpResponse<Stream<String>> r = CLIENT.send(HttpRequest.newBuilder(
                        URI.create(baseUrl + "/stats/stream" + query)).build(), HttpResponse.BodyHandlers.ofLines());
                this.status = r.statusCode();
                this.contentType = r.headers().firstValue("content-type").orElse("");
                this.lines = r.body();
                this.it = lines.iterator();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }

        /** The next event; each is {@code event: NAME}, {@code data: JSON}, then a blank line. */
        Event next() {
            String name = it.next();
            String data = it.next();
            String blank = it.next();
            assertThat(name).startsWith("event: ");
            assertThat(data).startsWith("data: ");
            assertThat(blank).isEmpty();
            try {
                return new Event(name.substring(7), JSON.readTree(data.substring(6)));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        Event until(Predicate<Event> wanted, int maxEvents) {
            for (int i = 0; i < maxEvents; i++) {
                Event e = next();
                if (wanted.test(e)) {
                    return e;
                }
            }
            throw new AssertionError("no wanted event among " + maxEvents);
        }

        @Override
        public void close() {
            lines.close();
        }
    }

    static Set<String> adaptersOf(JsonNode step) {
        Set<String> out = new HashSet<>();
        for (JsonNode seg : step.get("segments")) {
            out.add(seg.get("adapter").isNull() ? "base" : seg.get("adapter").asText());
        }
        return out;
    }

    /**
     * Two long generations for two adapters at once: {@code first} starts, and once it runs, {@code second};
     * each generates {@code tokens} tokens, so they share many steps.
     */
    static void runTogether(EngineBuilder.Runtime runtime, Http http, String first, String second, int tokens)
            throws Exception {
        String body = """
                {"model":"%s","prompt":"%s","max_tokens":%d,"temperature":0,"ignore_eos":true}""";
        CompletableFuture<Http.Response> a = CompletableFuture.supplyAsync(
                () -> http.post("/v1/completions", body.formatted(first, PROMPT, tokens)));
        while (runtime.engine().stats().running() == 0 && !a.isDone()) {
            Thread.sleep(1);
        }
        assertThat(http.post("/v1/completions", body.formatted(second, PROMPT, tokens)).status()).isEqualTo(200);
        assertThat(a.get().status()).isEqualTo(200);
    }

    @Test
    void streamOpensWithHelloThenSummarisesEachEngineWithItsAdapterTiers() {
        try (Events events = new Events(server.baseUrl(), "?backlog=0")) {
            assertThat(events.status).isEqualTo(200);
            assertThat(events.contentType).startsWith("text/event-stream");
            Event hello = events.next();
            assertThat(hello.name()).isEqualTo("hello");
            JsonNode lane = hello.data().get("engines").get(0);
            assertThat(lane.get("engine").asText()).isEqualTo("0");
            assertThat(lane.get("model").asText()).isEqualTo(TestServers.BASE);
            assertThat(lane.get("kv_pages_total").asInt()).isEqualTo(runtime.engine().stats().kvPagesTotal());
            assertThat(lane.get("adapter_slots").asInt()).isEqualTo(4);
            assertThat(hello.data().at("/history/0").isArray()).isTrue();
            assertThat(hello.data().get("history_seconds").asInt()).isEqualTo(LiveStats.HISTORY_SECONDS);

            Event summary = events.until(e -> e.name().equals("engine"), 50);
            JsonNode s = summary.data();
            assertThat(s.get("engine").asText()).isEqualTo("0");
            for (String field : List.of("running", "waiting", "kv_pages_used", "kv_pages_total", "steps", "prompt_tokens",
                    "generation_tokens", "tokens_per_s", "adapter_slots")) {
                assertThat(s.has(field)).as(field).isTrue();
            }
            assertThat(s.has("dropped_steps")).as("sent only when a reader fell behind").isFalse();
            // Every registered adapter is in exactly one tier.
            List<String> placed = new ArrayList<>();
            for (String tier : List.of("device", "loading", "host", "disk")) {
                s.get("adapters").get(tier).forEach(n -> placed.add(n.asText()));
            }
            assertThat(placed).containsExactlyInAnyOrderElementsOf(TestServers.ADAPTERS);
        }
    }

    @Test
    void twoAdaptersRunningTogetherShareStepsAsTwoSegments() throws Exception {
        try (Events events = new Events(server.baseUrl(), "?backlog=0")) {
            assertThat(events.next().name()).isEqualTo("hello");
            runTogether(runtime, http, "upper", "sort", 48);
            List<JsonNode> steps = new ArrayList<>();
            events.until(e -> {
                if (e.name().equals("step")) {
                    steps.add(e.data());
                }
                return e.name().equals("step") && adaptersOf(e.data()).equals(Set.of("upper", "sort"))
                        && e.data().get("rows").asInt() == 2;
            }, 500);
            JsonNode shared = steps.getLast();
            assertThat(shared.get("engine").asText()).isEqualTo("0");
            assertThat(shared.get("segments")).hasSize(2);
            for (JsonNode seg : shared.get("segments")) {
                assertThat(seg.get("requests").asInt()).isEqualTo(1);
                assertThat(seg.get("decode_rows").asInt()).isEqualTo(1);
                assertThat(seg.get("prefill_rows").asInt()).isZero();
            }
            assertThat(shared.get("sampled").asInt()).isEqualTo(2);
            assertThat(shared.get("running").asInt()).isEqualTo(2);
            assertThat(shared.get("kv_pages_used").asInt()).isPositive();
            assertThat(shared.get("duration_ms").asDouble()).isPositive();
            // Each request's first step prefills its whole prompt (the step budget is far larger).
            JsonNode prefill = steps.getFirst();
            assertThat(prefill.at("/segments/0/prefill_rows").asInt()).isEqualTo(PROMPT_TOKENS);
            assertThat(prefill.at("/segments/0/adapter").asText()).isEqualTo("upper");
            for (int i = 1; i < steps.size(); i++) {
                assertThat(steps.get(i).get("step").asLong()).isEqualTo(steps.get(i - 1).get("step").asLong() + 1);
            }
        }
    }

    @Test
    void backlogReplaysTheLastSteps() throws Exception {
        runTogether(runtime, http, "reverse", "translate", 12);
        long last = runtime.engine().stats().steps();
        try (Events events = new Events(server.baseUrl(), "?backlog=5")) {
            assertThat(events.next().name()).isEqualTo("hello");
            List<Long> replayed = new ArrayList<>();
            while (replayed.size() < 5) {
                Event e = events.next();
                if (e.name().equals("step")) {
                    replayed.add(e.data().get("step").asLong());
                }
            }
            assertThat(replayed).containsExactly(last - 4, last - 3, last - 2, last - 1, last);
        }
    }

    @Test
    void aBadBacklogIsRefusedWithAnOpenAiError() throws Exception {
        Http.Response r = http.get("/stats/stream?backlog=-3");
        assertThat(r.status()).isEqualTo(400);
        JsonNode error = JSON.readTree(r.bytes()).get("error");
        assertThat(error.get("param").asText()).isEqualTo("backlog");
        assertThat(error.get("message").asText()).contains("-3");
    }

    @Test
    void adaptersEndpointDescribesEachAdapterBehindTheKey() throws Exception {
        assertThat(new Http(server, null).get("/v1/adapters").status()).isEqualTo(401);
        assertThat(new Http(server, "wrong").get("/v1/adapters").status()).isEqualTo(401);
        Http.Response r = http.get("/v1/adapters");
        assertThat(r.status()).isEqualTo(200);
        JsonNode list = JSON.readTree(r.bytes());
        assertThat(list.get("base_model").asText()).isEqualTo(TestServers.BASE);
        List<String> names = new ArrayList<>();
        list.get("data").forEach(a -> names.add(a.get("name").asText()));
        assertThat(names).containsExactly("reverse", "sort", "translate", "upper");
        JsonNode upper = list.get("data").get(3);
        assertThat(upper.get("rank").asInt()).isEqualTo(4);
        assertThat(upper.get("alpha").asDouble()).isEqualTo(8.0);
        assertThat(upper.get("target_modules").toString()).isEqualTo("[\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\"]");
        assertThat(upper.get("size_bytes").asLong())
                .isEqualTo(Files.size(Fixtures.adapter("upper").resolve("adapter_model.safetensors")));
        assertThat(upper.at("/tiers/0").asText()).isIn("device", "loading", "host", "disk");
    }

    @Test
    void consoleFilesComeFromTheJarWithTheirTypesAndAStrictPolicy() {
        Http open = new Http(server, null); // the page itself needs no key: it asks for one
        Http.Response page = open.get("/");
        assertThat(page.status()).isEqualTo(200);
        assertThat(page.contentType()).startsWith("text/html");
        assertThat(page.body()).contains("<title>Punica-J console</title>").doesNotContain(KEY);
        Http.Response script = open.get("/console/app.js");
        assertThat(script.status()).isEqualTo(200);
        assertThat(script.contentType()).startsWith("text/javascript");
        HttpResponse<Void> head = send(server.baseUrl() + "/console/console.css");
        assertThat(head.headers().firstValue("content-security-policy").orElse(""))
                .contains("default-src 'self'").contains("script-src 'self'");
        assertThat(head.headers().firstValue("content-type").orElse("")).startsWith("text/css");

        Http.Response missing = open.get("/console/missing.js");
        assertThat(missing.status()).isEqualTo(404);
        assertThat(missing.body()).contains("\"error\"");
        assertThat(open.get("/console/..%2Fpom.xml").status()).isEqualTo(404);
        assertThat(open.get("/console/index.html.bak").status()).isEqualTo(404);
    }

    private static HttpResponse<Void> send(String url) {
        try {
            return CLIENT.send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.discarding());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    @Test
    void stoppingTheServerEndsOpenStreams() {
        EngineBuilder.Runtime own = TestServers.engine();
        PunicaServer s = TestServers.start(own, b -> { });
        try (Events events = new Events(s.baseUrl(), "")) {
            assertThat(events.next().name()).isEqualTo("hello");
            long started = System.nanoTime();
            s.stop(Duration.ofSeconds(10));
            assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(5));
            // The stream ends: reading runs out instead of blocking.
            int rest = 0;
            while (events.it.hasNext()) {
                events.it.next();
                rest++;
            }
            assertThat(rest).isLessThan(100);
        } finally {
            own.close();
        }
    }
}
