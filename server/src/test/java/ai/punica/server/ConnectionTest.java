package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The server as clients, proxies and supervisors meet it at the connection level: port conflicts,
 * HTTP/1.0, Connection: close, stalled and idle sockets, the connection cap, and clients that leave
 * while their request is generating. Raw sockets throughout, to see what is on the wire.
 */
class ConnectionTest {
    private static final String LONG_COMPLETION = "{\"model\":\"upper\",\"prompt\":\"input: red apple stone\\noutput:\","
            + "\"max_tokens\":900,\"ignore_eos\":true,\"temperature\":1,\"seed\":7";
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private final List<LogRecord> warnings = new ArrayList<>();
    private final Handler capture = new Handler() {
        @Override
        public void publish(LogRecord r) {
            if (r.getLevel().intValue() >= Level.WARNING.intValue()) {
                synchronized (warnings) {
                    warnings.add(r);
                }
            }
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        // A keep-alive timeout far longer than the tests wait, so a connection that closes did so for its reason.
        server = TestServers.start(runtime, b -> b.requestReadTimeout(Duration.ofSeconds(1))
                .keepAliveTimeout(Duration.ofSeconds(60)));
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    @BeforeEach
    void captureHelidonWarnings() {
        Logger.getLogger("").addHandler(capture);
    }

    @AfterEach
    void noStackTraceWasLogged() {
        Logger.getLogger("").removeHandler(capture);
        synchronized (warnings) {
            assertThat(warnings).as("warnings logged by the web server").allSatisfy(r ->
                    assertThat(r.getThrown()).as(r.getMessage()).isNull());
        }
    }

    @Test
    void aPortInUseFailsTheStartWithOneLine() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 50, InetAddress.getByName("127.0.0.1"))) {
            int port = taken.getLocalPort();
            assertThatThrownBy(() -> PunicaServer.builder().runtime(runtime).host("127.0.0.1").port(port).build()
                    .start())
                    .isInstanceOf(PunicaServer.ListenException.class)
                    .hasMessage("cannot listen on 127.0.0.1:" + port + ": the port is already in use (another server "
                            + "is running; stop it or pass another --port)");
        }
    }

    @Test
    void http10RequestsAreAnsweredAndTheConnectionCloses() throws Exception {
        String health = exchange("GET /health HTTP/1.0\r\n\r\n");
        assertThat(health).startsWith("HTTP/1.1 200").containsIgnoringCase("connection: close");

        byte[] body = "{\"model\":\"upper\",\"prompt\":\"input: red apple stone\\noutput:\",\"max_tokens\":8,\"temperature\":0}"
                .getBytes(StandardCharsets.UTF_8);
        String completion = exchange("POST /v1/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                + "\r\nContent-Length: " + body.length + "\r\n\r\n" + new String(body, StandardCharsets.UTF_8));
        assertThat(completion).startsWith("HTTP/1.1 200").contains("RED APPLE STONE");
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {
        "GET /health HTTP/1.1\r\n\r\n",                                          // no Host
        "GET /health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",            // a header without a colon
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",  // a length that is no number
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n"})                            // a space inside the path
    void malformedRequestsGetAnOpenAiErrorBody(String request) throws Exception {
        String response = exchange(request);
        assertThat(response).startsWith("HTTP/1.1 400");
        String body = response.substring(response.indexOf("\r\n\r\n") + 4);
        var error = new com.fasterxml.jackson.databind.ObjectMapper().readTree(body).get("error");
        assertThat(error).as(response).isNotNull();
        assertThat(error.get("type").asText()).isEqualTo("invalid_request_error");
        assertThat(error.get("message").asText()).isNotBlank();
    }

    @Test
    void connectionCloseIsHonoured() throws Exception {
        String response = exchange("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assertThat(response).startsWith("HTTP/1.1 200").containsIgnoringCase("connection: close");
    }

    @Test
    void halfSentHeadersAndBodiesTimeOut() throws Exception {
        assertClosedByServer("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le");
        assertClosedByServer("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: 100\r\n\r\n{\"prompt\":");
    }

    @Test
    void anIdleKeepAliveConnectionIsClosed() throws Exception {
        PunicaServer shortKeepAlive = TestServers.start(runtime, b -> b.keepAliveTimeout(Duration.ofSeconds(1)));
        try (Socket s = new Socket("127.0.0.1", shortKeepAlive.port())) {
            s.setSoTimeout(10_000);
            s.getOutputStream().write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            String head = readHead(s.getInputStream());
            assertThat(head).startsWith("HTTP/1.1 200");
            long start = System.nanoTime();
            assertThat(s.getInputStream().read()).isEqualTo(-1);
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(5));
        } finally {
            shortKeepAlive.stop(Duration.ofSeconds(1));
        }
    }

    @Test
    void connectionsBeyondTheCapWaitUntilOneCloses() throws Exception {
        try (var capped = TestServers.engine()) {
            PunicaServer s = TestServers.start(capped, b -> b.maxConnections(1).requestReadTimeout(Duration.ofSeconds(30)));
            try (Socket holder = new Socket("127.0.0.1", s.port()); Socket waiting = new Socket("127.0.0.1", s.port())) {
                holder.getOutputStream().write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                assertThat(readHead(holder.getInputStream())).startsWith("HTTP/1.1 200");
                waiting.setSoTimeout(500);
                waiting.getOutputStream().write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
                assertThatThrownBy(() -> waiting.getInputStream().read()).isInstanceOf(SocketTimeoutException.class);
                holder.close();
                waiting.setSoTimeout(10_000);
                assertThat(readHead(waiting.getInputStream())).startsWith("HTTP/1.1 200");
            } finally {
                // Helidon's accept loop, parked at the cap, may log the listener's closing; that is not a client event.
                Logger.getLogger("").removeHandler(capture);
                s.stop(Duration.ofSeconds(1));
            }
        }
    }

    @Test
    void aNonStreamingClientThatLeavesIsCancelled() throws Exception {
        long before = runtime.engine().stats().generationTokens();
        double abortsBefore = aborts();
        try (Socket s = post(LONG_COMPLETION + "}")) {
            Thread.sleep(300);
        }
        assertGenerationStops(before);
        assertAbortCounted(abortsBefore + 1);
    }

    @Test
    void aStreamingClientThatLeavesIsCancelled() throws Exception {
        long before = runtime.engine().stats().generationTokens();
        double abortsBefore = aborts();
        Socket s = Http.openStreamAndReadFirstFrame(server, "/v1/completions", LONG_COMPLETION + ",\"stream\":true}");
        s.close();
        assertGenerationStops(before);
        assertAbortCounted(abortsBefore + 1);
    }

    /**
     * A streaming client that leaves while its request is still queued, before the first frame, is answered (499)
     * without a server error: before, the handler returned with no response and Helidon logged "A route MUST call
     * either send..." and an Internal Server Error with its stack trace (seen at the end of a saturated serving run).
     * One running slot: a long stream holds it, a second one waits, its client leaves.
     */
    @Test
    void aStreamingClientThatLeavesWhileQueuedIsAnsweredWithoutAServerError() throws Exception {
        EngineConfig one = EngineConfig.builder().maxRunning(1).kvCacheBytes(32L << 20).loraSlots(4).maxLoraRank(32)
                .build();
        try (EngineBuilder.Runtime single = TestServers.engine(one)) {
            PunicaServer s = TestServers.start(single, b -> { });
            try (Socket running = Http.openStreamAndReadFirstFrame(s, "/v1/completions",
                    LONG_COMPLETION + ",\"stream\":true}")) {
                Socket queued = new Socket("127.0.0.1", s.port());
                byte[] body = (LONG_COMPLETION + ",\"stream\":true}").getBytes(StandardCharsets.UTF_8);
                queued.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        + "application/json\r\nContent-Length: " + body.length + "\r\n\r\n")
                        .getBytes(StandardCharsets.US_ASCII));
                queued.getOutputStream().write(body);
                queued.getOutputStream().flush();
                long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
                while (single.engine().stats().waiting() == 0 && System.nanoTime() < end) {
                    Thread.sleep(10);
                }
                assertThat(single.engine().stats().waiting()).as("the second stream waits").isEqualTo(1);
                queued.close();
                end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
                while (single.engine().stats().waiting() > 0 && System.nanoTime() < end) {
                    Thread.sleep(10);
                }
                assertThat(single.engine().stats().waiting()).as("the queued request left with its client").isZero();
                Thread.sleep(200); // the handler answers after the engine lets the request go
                synchronized (warnings) {
                    assertThat(warnings).as("warnings").noneMatch(r -> String.valueOf(r.getMessage()).contains("MUST"));
                }
            } finally {
                s.stop(Duration.ofSeconds(5));
            }
        }
    }

    /** The engine goes idle long before the 900 tokens asked for are generated. */
    private static void assertGenerationStops(long tokensBefore) throws InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (runtime.engine().stats().running() > 0 && System.nanoTime() < end) {
            Thread.sleep(20);
        }
        assertThat(runtime.engine().stats().running()).isZero();
        assertThat(runtime.engine().stats().generationTokens() - tokensBefore).isLessThan(900);
    }

    private static void assertAbortCounted(double expected) throws InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (aborts() < expected && System.nanoTime() < end) {
            Thread.sleep(20);
        }
        assertThat(aborts()).isEqualTo(expected);
    }

    private static double aborts() {
        String metrics = new Http(server, null).get("/metrics").body();
        for (String line : metrics.split("\n")) {
            if (line.startsWith("vllm:request_success_total{finished_reason=\"abort\"")) {
                return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        return 0;
    }

    private static Socket post(String json) throws IOException {
        Socket s = new Socket("127.0.0.1", server.port());
        byte[] body = json.getBytes(StandardCharsets.UTF_8);
        s.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + "Content-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        s.getOutputStream().write(body);
        s.getOutputStream().flush();
        return s;
    }

    /**
     * Sends a request without half-closing and reads until the server closes, which it must do within
     * 20 s: for its own reason, since the keep-alive timeout is 60 s.
     */
    private static String exchange(String request) throws IOException {
        try (Socket s = new Socket("127.0.0.1", server.port())) {
            s.setSoTimeout(20_000);
            s.getOutputStream().write(request.getBytes(StandardCharsets.UTF_8));
            s.getOutputStream().flush();
            return new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    private static void assertClosedByServer(String partialRequest) throws IOException {
        try (Socket s = new Socket("127.0.0.1", server.port())) {
            s.setSoTimeout(10_000);
            s.getOutputStream().write(partialRequest.getBytes(StandardCharsets.US_ASCII));
            s.getOutputStream().flush();
            long start = System.nanoTime();
            s.getInputStream().readAllBytes();
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(5));
        }
    }

    private static String readHead(InputStream in) throws IOException {
        ByteArrayOutputStream seen = new ByteArrayOutputStream();
        int contentLength = 0;
        while (true) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("closed before the end of the response: " + seen);
            }
            seen.write(b);
            String s = seen.toString(StandardCharsets.US_ASCII);
            if (s.endsWith("\r\n\r\n")) {
                for (String line : s.split("\r\n")) {
                    if (line.toLowerCase().startsWith("content-length:")) {
                        contentLength = Integer.parseInt(line.substring(15).trim());
                    }
                }
                in.readNBytes(contentLength);
                return s;
            }
        }
    }
}
