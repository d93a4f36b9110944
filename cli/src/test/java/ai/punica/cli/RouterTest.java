package ai.punica.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.cluster.PlacementPolicy;
import ai.punica.router.Router;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * {@code punica router} over three {@code punica serve} processes on 127.0.0.1 (the third with two engines inside),
 * started from this test with the built classpath: streams pass through byte for byte; an engine killed with SIGKILL mid-stream has every stream
 * finish on another engine with the text it would have had; bad engines and bad continuations are refused.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class RouterTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<Process> processes = new ArrayList<>();
    private static final List<URI> urls = new ArrayList<>();
    private static final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private static Router router;

    @BeforeAll
    static void startEngines() throws Exception {
        List<CompletableFuture<URI>> started = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            ServeProcess p = ServeProcess.start(List.of(), "--max-running", "8", "--engines", i == 2 ? "2" : "1");
            processes.add(p.process());
            started.add(p.url());
        }
        for (CompletableFuture<URI> f : started) {
            urls.add(f.get(120, TimeUnit.SECONDS));
        }
        router = new Router(new Router.Config(urls, null, new PlacementPolicy.Consolidate(), Duration.ofMillis(100),
                "127.0.0.1", 0)).start();
    }

    @AfterAll
    static void stop() {
        if (router != null) {
            router.close();
        }
        processes.forEach(Process::destroyForcibly);
    }

    static HttpResponse<String> post(URI base, String path, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(base.resolve(path)).timeout(Duration.ofSeconds(300))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    private static URI routerUrl() {
        return URI.create("http://127.0.0.1:" + router.port());
    }

    /**
     * A stream's data frames with the per-response id, creation time and text blanked: what must be the same
     * byte for byte whichever server sends it (how many tokens share a frame depends on timing).
     */
    static List<String> frameShapes(String sse) {
        List<String> out = new ArrayList<>();
        for (String frame : sse.split("\n\n")) {
            if (!frame.equals(": keep-alive")) {
                out.add(frame.replaceAll("\"id\":\"[a-z]+-[0-9a-f]+\"", "\"id\":\"-\"")
                        .replaceAll("\"created\":\\d+", "\"created\":0")
                        .replaceAll("\"text\":\"[^\"]*\"", "\"text\":\"-\""));
            }
        }
        return out.stream().distinct().toList();
    }

    /** The concatenated text of a completions stream; fails on an error frame or a missing [DONE]. */
    static String text(String sse) throws Exception {
        StringBuilder text = new StringBuilder();
        assertThat(sse).endsWith("data: [DONE]\n\n");
        for (String frame : sse.split("\n\n")) {
            if (frame.equals(": keep-alive")) {
                continue; // sent while the engine is silent for long; clients skip comments
            }
            assertThat(frame).startsWith("data: ");
            String data = frame.substring(6);
            if (!data.equals("[DONE]")) {
                JsonNode n = JSON.readTree(data);
                assertThat(n.has("error")).as(data).isFalse();
                text.append(n.get("choices").get(0).get("text").asText());
            }
        }
        return text.toString();
    }

    private static String stream(String model, int seed, int maxTokens) {
        return "{\"model\":\"" + model + "\",\"prompt\":\"input: red apple stone blue\\noutput:\",\"max_tokens\":"
                + maxTokens + ",\"temperature\":1.0,\"top_p\":0.95,\"seed\":" + seed + ",\"ignore_eos\":true,"
                + "\"stream\":true}";
    }

    @Test
    @Order(1)
    void aStreamThroughTheRouterIsTheEnginesByteForByte() throws Exception {
        for (String model : List.of("punica-demo", "sort")) {
            String body = stream(model, 42, 16);
            HttpResponse<String> direct = post(urls.get(2), "/v1/completions", body);
            HttpResponse<String> routed = post(routerUrl(), "/v1/completions", body);
            assertThat(routed.statusCode()).isEqualTo(200);
            assertThat(routed.headers().firstValue("content-type")).isEqualTo(direct.headers().firstValue("content-type"));
            assertThat(text(routed.body())).isEqualTo(text(direct.body()));
            assertThat(frameShapes(routed.body())).isEqualTo(frameShapes(direct.body()));
            assertThat(routed.body()).doesNotContain(": tokens");
        }
        // Whole responses and errors pass through as they are.
        HttpResponse<String> unknown = post(routerUrl(), "/v1/completions", "{\"model\":\"nope\",\"prompt\":\"x\"}");
        assertThat(unknown.statusCode()).isEqualTo(404);
        assertThat(unknown.body()).contains("The model `nope` does not exist.");
        HttpResponse<String> whole = post(routerUrl(), "/v1/completions",
                "{\"model\":\"upper\",\"prompt\":\"input: red apple stone\\noutput:\",\"max_tokens\":16,\"temperature\":0}");
        assertThat(JSON.readTree(whole.body()).get("choices").get(0).get("text").asText()).isEqualTo(" RED APPLE STONE");
    }

    @Test
    @Order(2)
    void badEnginesAndBadContinuationsAreRefusedClearly() throws Exception {
        assertThatThrownBy(() -> new Router.Config(List.of(urls.get(0), urls.get(0)), null,
                new PlacementPolicy.Consolidate(), Duration.ofSeconds(1), "127.0.0.1", 0))
                .hasMessage("engine URL " + urls.get(0) + " is given twice");
        try (ServerSocket garbage = new ServerSocket(0); ServerSocket closed = new ServerSocket(0)) {
            int deadPort = closed.getLocalPort();
            closed.close();
            Thread.ofVirtual().start(() -> answerGarbage(garbage));
            URI dead = URI.create("http://127.0.0.1:" + deadPort);
            URI junk = URI.create("http://127.0.0.1:" + garbage.getLocalPort());
            try (Router r = new Router(new Router.Config(List.of(dead, junk, urls.get(1)), null,
                    new PlacementPolicy.Consolidate(), Duration.ofMillis(100), "127.0.0.1", 0)).start()) {
                URI base = URI.create("http://127.0.0.1:" + r.port());
                JsonNode state = JSON.readTree(http.send(HttpRequest.newBuilder(base.resolve("/v1/router/state"))
                        .GET().build(), HttpResponse.BodyHandlers.ofString()).body());
                assertThat(state.get("engines").get(0).get("available").asBoolean()).isFalse();
                assertThat(state.get("engines").get(0).get("problem").asText()).startsWith("unreachable");
                assertThat(state.get("engines").get(1).get("problem").asText())
                        .startsWith("answered garbage to GET /v1/engine/state: not JSON (not json!)");
                assertThat(state.get("engines").get(2).get("available").asBoolean()).isTrue();
                HttpResponse<String> ok = post(base, "/v1/completions", stream("punica-demo", 7, 8));
                assertThat(text(ok.body())).isNotEmpty();
            }
        }
        // The continuation endpoint checks what it is given, naming the field.
        String request = JSON.writeValueAsString(JSON.readTree(stream("sort", 3, 20)));
        HttpResponse<String> outOfRange = post(urls.get(1), "/v1/engine/continue", "{\"endpoint\":\"completions\","
                + "\"id\":\"cmpl-1\",\"created\":1,\"request\":" + request + ",\"generated_token_ids\":[5,99999]}");
        assertThat(outOfRange.statusCode()).isEqualTo(400);
        assertThat(outOfRange.body()).contains("token id 99999 at position 1 is outside the vocabulary")
                .contains("\"param\":\"generated_tokens\"");
        HttpResponse<String> unknownAdapter = post(urls.get(1), "/v1/engine/continue", "{\"endpoint\":\"completions\","
                + "\"id\":\"cmpl-2\",\"created\":1,\"request\":" + request.replace("\"sort\"", "\"nope\"")
                + ",\"generated_token_ids\":[5]}");
        assertThat(unknownAdapter.statusCode()).isEqualTo(404);
        assertThat(unknownAdapter.body()).contains("The model `nope` does not exist.");
        HttpResponse<String> unseeded = post(urls.get(1), "/v1/engine/continue", "{\"endpoint\":\"completions\","
                + "\"id\":\"cmpl-3\",\"created\":1,\"request\":" + request.replace(",\"seed\":3", "")
                + ",\"generated_token_ids\":[5]}");
        assertThat(unseeded.statusCode()).isEqualTo(400);
        assertThat(unseeded.body()).contains("a sampled request can be continued only with its seed");
    }

    private static void answerGarbage(ServerSocket server) {
        while (!server.isClosed()) {
            try (Socket s = server.accept()) {
                s.getInputStream().read(new byte[4096]);
                OutputStream out = s.getOutputStream();
                out.write("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!"
                        .getBytes(StandardCharsets.US_ASCII));
                out.flush();
            } catch (IOException e) {
                return;
            }
        }
    }

    @Test
    @Order(3)
    void streamsOfAKilledEngineFinishOnAnotherWithTheirText() throws Exception {
        int streams = 4;
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < streams; i++) {
            expected.add(text(post(urls.get(2), "/v1/completions", stream(i % 2 == 0 ? "sort" : "punica-demo",
                    100 + i, 48)).body()));
        }
        List<ByteArrayOutputStream> seen = new ArrayList<>();
        List<CompletableFuture<Void>> done = new ArrayList<>();
        for (int i = 0; i < streams; i++) {
            HttpResponse<InputStream> r = http.send(HttpRequest.newBuilder(routerUrl().resolve("/v1/completions"))
                    .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(
                            stream(i % 2 == 0 ? "sort" : "punica-demo", 100 + i, 48))).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            assertThat(r.statusCode()).isEqualTo(200);
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            seen.add(buf);
            done.add(CompletableFuture.runAsync(() -> {
                try (InputStream in = r.body()) {
                    byte[] chunk = new byte[256];
                    int n;
                    while ((n = in.read(chunk)) >= 0) {
                        synchronized (buf) {
                            buf.write(chunk, 0, n);
                        }
                    }
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
            }));
        }
        // Consolidate put every stream on one engine; kill it when each stream has a few frames.
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < end && seen.stream().anyMatch(b -> frames(b) < 3)) {
            Thread.sleep(5);
        }
        JsonNode state = JSON.readTree(http.send(HttpRequest.newBuilder(routerUrl().resolve("/v1/router/state"))
                .GET().build(), HttpResponse.BodyHandlers.ofString()).body());
        int busiest = -1;
        for (int i = 0; i < 3; i++) {
            if (state.get("engines").get(i).get("requests").asInt() == streams) {
                busiest = i;
            }
        }
        assertThat(busiest).as(state.toString()).isGreaterThanOrEqualTo(0);
        assertThat(seen.stream().allMatch(b -> !b.toString(StandardCharsets.UTF_8).contains("[DONE]")))
                .as("every stream still running when the engine is killed").isTrue();
        processes.get(busiest).destroyForcibly(); // SIGKILL
        for (int i = 0; i < streams; i++) {
            done.get(i).get(300, TimeUnit.SECONDS);
            assertThat(text(seen.get(i).toString(StandardCharsets.UTF_8))).as("stream %d", i)
                    .isEqualTo(expected.get(i));
        }
        assertThat(router.failovers()).isEqualTo(streams);
        // The dead engine is out of rotation; new requests still succeed.
        HttpResponse<String> after = post(routerUrl(), "/v1/completions", stream("upper", 9, 8));
        assertThat(text(after.body())).isNotEmpty();
    }

    private static int frames(ByteArrayOutputStream b) {
        synchronized (b) {
            return b.toString(StandardCharsets.UTF_8).split("\n\n", -1).length - 1;
        }
    }
}
