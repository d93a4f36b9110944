package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.cluster.EngineCluster;
import ai.punica.cluster.PlacementPolicy;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * One HTTP API over three in-process CPU engines with small KV pools ({@code punica serve --engines 3}):
 * streams of requests that migrate between engines read, frame by frame, as the unmigrated run; the metrics
 * carry an engine label and the scheduler's counters; a full queue answers 429 with Retry-After.
 */
class ClusterServerTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** {@code pages} KV pages of 4 tokens per engine (40: two requests of 120 tokens cannot share one). */
    private static EngineConfig sized(EngineBuilder.Runtime probe, int pages, int maxRunning, int maxWaiting) {
        var c = probe.modelConfig();
        long bytes = pages * 4L * 2 * c.numLayers() * c.numKvHeads() * c.headDim() * 4;
        return new EngineConfig(64, maxRunning, maxWaiting, 4, bytes, 0, 4, 32, 256L << 20);
    }

    private record Cluster(List<EngineBuilder.Runtime> runtimes, EngineCluster cluster, PunicaServer server)
            implements AutoCloseable {
        @Override
        public void close() {
            server.stop(Duration.ofSeconds(5));
            cluster.close();
            runtimes.forEach(EngineBuilder.Runtime::close);
        }
    }

    private static Cluster start(EngineConfig config, int queue) {
        List<EngineBuilder.Runtime> runtimes = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            runtimes.add(TestServers.engine(config));
        }
        EngineCluster cluster = EngineCluster.local(runtimes.stream().map(EngineBuilder.Runtime::engine).toList(),
                new EngineCluster.Config(new PlacementPolicy.Consolidate(), queue, Duration.ofSeconds(60)));
        PunicaServer server = PunicaServer.builder().cluster(cluster).host("127.0.0.1").port(0).build().start();
        return new Cluster(runtimes, cluster, server);
    }

    private static String body(String model, String prompt, String sampling) {
        return body(model, prompt, 100, sampling);
    }

    private static String body(String model, String prompt, int maxTokens, String sampling) {
        return "{\"model\":\"" + model + "\",\"prompt\":" + quote(prompt) + ",\"max_tokens\":" + maxTokens
                + ",\"ignore_eos\":true,\"stream\":true," + sampling + "}";
    }

    private static String quote(String s) {
        try {
            return JSON.writeValueAsString(s);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    /** The text of an SSE completion stream, frame by frame; fails on an error frame. */
    private static String streamedText(Http.Response r) throws Exception {
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        StringBuilder text = new StringBuilder();
        List<String> frames = Http.sseData(r.body());
        assertThat(frames.getLast()).isEqualTo("[DONE]");
        for (String frame : frames.subList(0, frames.size() - 1)) {
            JsonNode n = JSON.readTree(frame);
            assertThat(n.has("error")).as(frame).isFalse();
            text.append(n.get("choices").get(0).get("text").asText());
        }
        return text.toString();
    }

    @Test
    void migratingStreamsReadAsTheUnmigratedRun() throws Exception {
        List<TestServers.EvalCase> cases = TestServers.eval("reverse", 24);
        try (var roomy = TestServers.engine(); var cluster = start(sized(roomy, 40, 16, 1024), 64);
             var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            Http http = new Http(cluster.server(), null);
            aSecondRequestOnAFullEngineMoves(cluster, http, roomy, cases);
            for (String sampling : List.of("\"temperature\":0", "\"temperature\":1.0,\"top_p\":0.95,\"seed\":")) {
                List<String> expected = new ArrayList<>();
                List<CompletableFuture<String>> streams = new ArrayList<>();
                for (int i = 0; i < cases.size(); i++) {
                    String model = i % 2 == 0 ? "reverse" : TestServers.BASE;
                    String s = sampling.endsWith(":") ? sampling + (500 + i) : sampling;
                    SamplingParams p = s.contains("seed")
                            ? SamplingParams.builder().temperature(1.0f).topP(0.95f).seed(500L + i).maxTokens(100)
                                    .ignoreEos(true).build()
                            : SamplingParams.greedy(100).toBuilder().ignoreEos(true).build();
                    expected.add(roomy.engine().generate(new GenerationRequest("ref-" + i, i % 2 == 0 ? "reverse" : null,
                            roomy.tokenizer().encode(cases.get(i).prompt(), true), p)).join().text());
                    String json = body(model, cases.get(i).prompt(), s);
                    streams.add(CompletableFuture.supplyAsync(() -> {
                        try {
                            return streamedText(http.post("/v1/completions", json));
                        } catch (Exception e) {
                            throw new IllegalStateException(e);
                        }
                    }, pool));
                }
                for (int i = 0; i < cases.size(); i++) {
                    assertThat(streams.get(i).get(120, TimeUnit.SECONDS)).as("%s, request %d", sampling, i)
                            .isEqualTo(expected.get(i));
                }
            }
            EngineCluster.Snapshot snap = cluster.cluster().snapshot();
            assertThat(snap.migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED)).as("migrations").isPositive();
            String metrics = http.get("/metrics").body();
            assertThat(metrics).contains("vllm:num_requests_running{engine=\"0\",model_name=\"fixture-base\"} ")
                    .contains("vllm:kv_cache_usage_perc{engine=\"2\",model_name=\"fixture-base\"} ")
                    .contains("punica_cluster_queue_length 0")
                    .contains("punica_cluster_placements_total{engine=\"0\",policy=\"consolidate\"} ");
            Matcher m = Pattern.compile("punica_cluster_migrations_total\\{reason=\"kv_exhausted\"} (\\S+)")
                    .matcher(metrics);
            assertThat(m.find()).as(metrics).isTrue();
            assertThat(Double.parseDouble(m.group(1))).isEqualTo(
                    (double) snap.migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED));
            for (EngineBuilder.Runtime r : cluster.runtimes()) {
                assertNothingHeld(r.engine());
            }
        }
    }

    /**
     * A migration whatever the timing: request A (110 tokens to generate, 30-odd of the 40 pages at its end) runs
     * alone on engine 0; B, sent once A streams, joins it there (consolidation: the busiest engine with room for
     * B's prompt). The two cannot both finish in 40 pages while engines 1 and 2 are empty, so one moves. (The 24
     * concurrent streams after this may spread over the engines before any runs out, and then preempt in place.)
     */
    private static void aSecondRequestOnAFullEngineMoves(Cluster cluster, Http http, EngineBuilder.Runtime roomy,
            List<TestServers.EvalCase> cases) throws Exception {
        long before = cluster.cluster().snapshot().migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED);
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            expected.add(roomy.engine().generate(new GenerationRequest("pair-" + i, "reverse",
                    roomy.tokenizer().encode(cases.get(i).prompt(), true),
                    SamplingParams.greedy(110).toBuilder().ignoreEos(true).build())).join().text());
        }
        CompletableFuture<String> a = CompletableFuture.supplyAsync(() -> {
            try {
                return streamedText(http.post("/v1/completions",
                        body("reverse", cases.get(0).prompt(), 110, "\"temperature\":0")));
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (cluster.cluster().snapshot().engines().get(0).load().running() < 1 && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        assertThat(cluster.cluster().snapshot().engines().get(0).load().running()).as("A running on engine 0")
                .isEqualTo(1);
        String b = streamedText(http.post("/v1/completions",
                body("reverse", cases.get(1).prompt(), 110, "\"temperature\":0")));
        assertThat(b).as("B").isEqualTo(expected.get(1));
        assertThat(a.get(120, TimeUnit.SECONDS)).as("A").isEqualTo(expected.get(0));
        assertThat(cluster.cluster().snapshot().migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED))
                .as("migrations of the pair").isGreaterThan(before);
    }

    @Test
    void aFullQueueAnswers429WithRetryAfter() throws Exception {
        try (var probe = TestServers.engine(); var cluster = start(sized(probe, 256, 1, 16), 1)) {
            Http http = new Http(cluster.server(), null);
            // One long request per engine, one in the queue: the next is refused.
            List<java.net.Socket> open = new ArrayList<>();
            String longRun = "{\"model\":\"" + TestServers.BASE + "\",\"messages\":[{\"role\":\"user\","
                    + "\"content\":\"red apple\"}],\"max_tokens\":900,\"ignore_eos\":true,\"stream\":true}";
            for (int i = 0; i < 3; i++) {
                open.add(Http.openStreamAndReadFirstFrame(cluster.server(), "/v1/chat/completions", longRun));
            }
            // A queued stream sends nothing until it runs (its HTTP status waits for the engine's first event):
            // send the fourth without reading, and wait until the cluster holds it.
            java.net.Socket queued = new java.net.Socket("127.0.0.1", cluster.server().port());
            open.add(queued);
            byte[] body = longRun.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            queued.getOutputStream().write(("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + "Content-Type: application/json\r\nContent-Length: " + body.length + "\r\n\r\n")
                    .getBytes(java.nio.charset.StandardCharsets.US_ASCII));
            queued.getOutputStream().write(body);
            queued.getOutputStream().flush();
            long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(5);
            while (cluster.cluster().snapshot().queued() < 1 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            var refused = HttpClient.newHttpClient().send(http.request("/v1/chat/completions")
                    .POST(HttpRequest.BodyPublishers.ofString(longRun)).header("Content-Type", "application/json")
                    .build(), HttpResponse.BodyHandlers.ofString());
            assertThat(refused.statusCode()).as(refused.body()).isEqualTo(429);
            assertThat(refused.headers().firstValue("Retry-After")).hasValue("1");
            assertThat(cluster.cluster().snapshot().queued()).isEqualTo(1);
            assertThat(refused.body()).contains("all 3 engines are full and 1 requests are waiting");
            for (var s : open) {
                s.close();
            }
            for (EngineBuilder.Runtime r : cluster.runtimes()) {
                assertNothingHeld(r.engine());
            }
        }
    }

    @Test
    void theStateEndpointShowsEachEnginesRoomAndIdleness() throws Exception {
        try (var probe = TestServers.engine(); var cluster = start(sized(probe, 40, 16, 1024), 8)) {
            Http http = new Http(cluster.server(), null);
            assertThat(http.post("/v1/completions", "{\"model\":\"sort\",\"prompt\":\"input: b a\\noutput:\","
                    + "\"max_tokens\":4}").status()).isEqualTo(200);
            Http.Response r = http.get("/v1/engine/state");
            assertThat(r.status()).isEqualTo(200);
            assertThat(r.contentType()).startsWith("application/json");
            JsonNode state = JSON.readTree(r.body());
            assertThat(state.get("object").asText()).isEqualTo("engine.state");
            assertThat(state.get("model").asText()).isEqualTo(TestServers.BASE);
            assertThat(state.get("policy").asText()).isEqualTo("consolidate");
            assertThat(state.get("queued").asInt()).isZero();
            JsonNode engines = state.get("engines");
            assertThat(engines).hasSize(3);
            JsonNode first = engines.get(0);
            assertThat(first.get("name").asText()).isEqualTo("0");
            assertThat(first.get("max_running").asInt()).isEqualTo(16);
            assertThat(first.get("kv_pages_total").asInt()).isEqualTo(40);
            assertThat(first.get("page_size").asInt()).isEqualTo(4);
            // Consolidate put the one request on engine 0, which loaded the adapter into a slot.
            assertThat(first.get("resident_adapters").toString()).isEqualTo("[\"sort\"]");
            assertThat(engines.get(1).get("resident_adapters").size()).isZero();
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            JsonNode e0 = first;
            while (System.nanoTime() < end && e0.get("idle_seconds").asDouble() == 0) {
                e0 = JSON.readTree(http.get("/v1/engine/state").body()).get("engines").get(0);
            }
            assertThat(e0.get("running").asInt()).isZero();
            assertThat(e0.get("free_kv_pages").asInt()).isEqualTo(40);
            assertThat(e0.get("idle_seconds").asDouble()).isPositive();
            assertThat(e0.get("idle").asBoolean()).as("idle only after --idle-after (60 s here)").isFalse();
        }
    }

    private static void assertNothingHeld(Engine e) {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < end && (e.stats().running() > 0 || e.stats().waiting() > 0
                || e.stats().kvPagesUsed() > 0)) {
            Thread.onSpinWait();
        }
        assertThat(e.liveRequestIds()).isEmpty();
        assertThat(e.callOnEngineThread(() -> e.stats().kvPagesUsed())).isZero();
        assertThat(e.callOnEngineThread(() -> e.adapters().pinnedSlots())).isZero();
    }
}
