package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/** stop(deadline): running requests may finish until the deadline, then they are cancelled. */
class GracefulStopTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String LONG = """
            {"prompt":"input: red apple stone\\noutput:","max_tokens":900,"ignore_eos":true,"temperature":0,\
            "stream":true}""";
    private static final String SHORT = """
            {"prompt":"input: red apple stone\\noutput:","max_tokens":32,"temperature":0}""";

    @Test
    void requestsThatFinishBeforeTheDeadlineCompleteAndTheRestAreAborted() throws Exception {
        try (EngineBuilder.Runtime runtime = TestServers.engine()) {
            PunicaServer server = TestServers.start(runtime, b -> { });
            Http http = new Http(server, null);
            CompletableFuture<Http.Response> longOne = CompletableFuture.supplyAsync(
                    () -> http.post("/v1/completions", LONG));
            CompletableFuture<Http.Response> shortOne = CompletableFuture.supplyAsync(
                    () -> http.post("/v1/completions", SHORT));
            awaitRunning(runtime, 1);
            shortOne.join();

            long start = System.nanoTime();
            server.stop(Duration.ofMillis(300));
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(10));

            assertThat(shortOne.join().status()).isEqualTo(200);
            Http.Response cut = longOne.join();
            assertThat(cut.status()).isEqualTo(200);
            List<String> data = Http.sseData(cut.body());
            assertThat(data.getLast()).isEqualTo("[DONE]");
            assertThat(JSON.readTree(data.get(data.size() - 2)).at("/choices/0/finish_reason").asText())
                    .isEqualTo("abort");
            // The stats are a snapshot the engine thread publishes; the client may read [DONE] just before it.
            long end = System.nanoTime() + Duration.ofSeconds(5).toNanos();
            while (runtime.engine().stats().kvPagesUsed() > 0 && System.nanoTime() < end) {
                Thread.sleep(10);
            }
            assertThat(runtime.engine().stats().kvPagesUsed()).isZero();
        }
    }

    @Test
    void newRequestsAre503WhileStopping() throws Exception {
        try (EngineBuilder.Runtime runtime = TestServers.engine()) {
            PunicaServer server = TestServers.start(runtime, b -> { });
            Http http = new Http(server, null);
            CompletableFuture<Http.Response> longOne = CompletableFuture.supplyAsync(
                    () -> http.post("/v1/completions", LONG));
            awaitRunning(runtime, 1);
            CompletableFuture<Void> stopping = CompletableFuture.runAsync(() -> server.stop(Duration.ofSeconds(2)));
            Thread.sleep(100);
            Http.Response refused = http.post("/v1/completions", SHORT);
            assertThat(refused.status()).isEqualTo(503);
            assertThat(refused.body()).contains("shutting down");
            assertThat(http.get("/health").status()).isEqualTo(503);
            stopping.join();
            assertThat(longOne.join().status()).isEqualTo(200);
        }
    }

    private static void awaitRunning(EngineBuilder.Runtime runtime, int count) throws InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (runtime.engine().stats().running() < count && System.nanoTime() < end) {
            Thread.sleep(5);
        }
        assertThat(runtime.engine().stats().running()).isGreaterThanOrEqualTo(count);
    }
}
