package ai.punica.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Queue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;
import java.util.stream.Stream;

/**
 * A headless Chromium driven through the DevTools protocol over the JDK's own WebSocket client: launch
 * with {@code --remote-debugging-port=0}, read the port Chromium chose from {@code DevToolsActivePort}
 * in its profile directory, attach to its page, then send protocol commands (navigate, evaluate
 * JavaScript, capture screenshots).
 */
final class Chromium implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<String> NAMES = List.of("chromium", "chromium-browser", "google-chrome");
    static final String INSTALL_HINT = "no Chromium found (looked for $PUNICA_CHROMIUM, then " + String.join(", ", NAMES)
            + " on the PATH): install it with `sudo apt-get install chromium` (Debian/Ubuntu) to run the console's"
            + " browser test";

    private final Process process;
    private final Path profile;
    private final WebSocket socket;
    private final AtomicLong ids = new AtomicLong();
    private final Map<Long, CompletableFuture<JsonNode>> pending = new ConcurrentHashMap<>();
    /** Uncaught exceptions, console errors and the browser's own log entries for the page, in order. */
    private final Queue<String> pageErrors = new ConcurrentLinkedQueue<>();

    /** The browser's executable: $PUNICA_CHROMIUM, else the first of chromium, chromium-browser, google-chrome on the PATH. */
    static Optional<Path> find() {
        String given = System.getenv("PUNICA_CHROMIUM");
        if (given != null && !given.isBlank()) {
            return Optional.of(Path.of(given)).filter(Files::isExecutable);
        }
        String path = System.getenv().getOrDefault("PATH", "");
        for (String name : NAMES) {
            for (String dir : path.split(File.pathSeparator)) {
                Path candidate = Path.of(dir.isEmpty() ? "." : dir, name);
                if (Files.isExecutable(candidate)) {
                    return Optional.of(candidate);
                }
            }
        }
        return Optional.empty();
    }

    static Chromium launch(Path executable, int width, int height) throws IOException, InterruptedException {
        Path profile = Files.createTempDirectory("punica-chromium");
        Process process = new ProcessBuilder(executable.toString(), "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--window-size=" + width + "," + height,
                "--user-data-dir=" + profile, "--remote-debugging-port=0", "about:blank")
                .redirectErrorStream(true)
                .redirectOutput(profile.resolve("chromium.log").toFile())
                .start();
        try {
            int port = devToolsPort(process, profile);
            return new Chromium(process, profile, pageSocket(port));
        } catch (IOException | RuntimeException | InterruptedException e) {
            process.destroyForcibly();
            deleteTree(profile);
            throw e;
        }
    }

    private Chromium(Process process, Path profile, String pageUrl) throws IOException {
        this.process = process;
        this.profile = profile;
        this.socket = HttpClient.newHttpClient().newWebSocketBuilder().connectTimeout(Duration.ofSeconds(10))
                .buildAsync(URI.create(pageUrl), new Listener()).join();
    }

    /** Chromium writes the port it bound, then the browser's path, into the profile once it listens. */
    private static int devToolsPort(Process process, Path profile) throws IOException, InterruptedException {
        Path file = profile.resolve("DevToolsActivePort");
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < end) {
            if (!process.isAlive()) {
                throw new IOException("chromium exited with " + process.exitValue() + ": "
                        + Files.readString(profile.resolve("chromium.log")));
            }
            if (Files.exists(file)) {
                List<String> lines = Files.readAllLines(file);
                if (lines.size() >= 2) {
                    return Integer.parseInt(lines.getFirst().trim());
                }
            }
            Thread.sleep(50);
        }
        throw new IOException("chromium did not write " + file + " within 30 s");
    }

    /** The WebSocket address of the browser's first page (the about:blank it opened). */
    private static String pageSocket(int port) throws IOException, InterruptedException {
        HttpClient http = HttpClient.newHttpClient();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (System.nanoTime() < end) {
            String body = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/json/list")).build(),
                    HttpResponse.BodyHandlers.ofString()).body();
            for (JsonNode target : JSON.readTree(body)) {
                if ("page".equals(target.path("type").asText())) {
                    return target.get("webSocketDebuggerUrl").asText();
                }
            }
            Thread.sleep(50);
        }
        throw new IOException("chromium on port " + port + " has no page target");
    }

    private final class Listener implements WebSocket.Listener {
        private final StringBuilder partial = new StringBuilder();

        @Override
        public CompletionStage<?> onText(WebSocket ws, CharSequence data, boolean last) {
            partial.append(data);
            if (last) {
                String message = partial.toString();
                partial.setLength(0);
                try {
                    JsonNode node = JSON.readTree(message);
                    if (node.has("id")) {
                        CompletableFuture<JsonNode> f = pending.remove(node.get("id").asLong());
                        if (f != null) {
                            f.complete(node);
                        }
                    } else if ("Runtime.exceptionThrown".equals(node.path("method").asText())) {
                        pageErrors.add(node.at("/params/exceptionDetails").toString());
                    } else if ("Log.entryAdded".equals(node.path("method").asText())
                            && List.of("error", "warning").contains(node.at("/params/entry/level").asText())
                            && !"network".equals(node.at("/params/entry/source").asText())) {
                        // Content-security-policy refusals and other browser complaints; failed requests
                        // (the network source) are the tests' own doing, a wrong key's 401 say.
                        pageErrors.add(node.at("/params/entry").toString());
                    } else if ("Runtime.consoleAPICalled".equals(node.path("method").asText())
                            && "error".equals(node.at("/params/type").asText())) {
                        pageErrors.add(node.at("/params/args").toString());
                    }
                } catch (IOException e) {
                    throw new IllegalStateException("unreadable DevTools message: " + message, e);
                }
            }
            ws.request(1);
            return null;
        }
    }

    /** Sends one protocol command and returns its result; a protocol error fails with its message. */
    JsonNode send(String method, Map<String, Object> params) {
        long id = ids.incrementAndGet();
        ObjectNode message = JSON.createObjectNode().put("id", id).put("method", method);
        message.set("params", JSON.valueToTree(params));
        CompletableFuture<JsonNode> reply = new CompletableFuture<>();
        pending.put(id, reply);
        socket.sendText(message.toString(), true).join();
        JsonNode node;
        try {
            node = reply.get(60, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new IllegalStateException("no answer from chromium to " + method, e);
        }
        if (node.has("error")) {
            throw new IllegalStateException(method + " failed: " + node.get("error"));
        }
        return node.get("result");
    }

    List<String> pageErrors() {
        return List.copyOf(pageErrors);
    }

    void viewport(int width, int height) {
        send("Emulation.setDeviceMetricsOverride", Map.of("width", width, "height", height, "deviceScaleFactor", 1,
                "mobile", false));
    }

    /**
     * Opens {@code url} afresh (through about:blank, so that a URL differing only in its fragment loads a
     * new document) and waits until the new document has loaded.
     */
    void open(String url) {
        send("Page.enable", Map.of());
        send("Runtime.enable", Map.of());
        send("Log.enable", Map.of());
        send("Page.navigate", Map.of("url", "about:blank"));
        waitFor("location.href === 'about:blank' && document.readyState === 'complete'", Duration.ofSeconds(20));
        send("Page.navigate", Map.of("url", url));
        waitFor("location.href === " + JSON.valueToTree(url) + " && document.readyState === 'complete'",
                Duration.ofSeconds(20));
    }

    /** Evaluates a JavaScript expression in the page (awaiting a promise) and returns its value as JSON. */
    JsonNode eval(String expression) {
        JsonNode r = send("Runtime.evaluate", Map.of("expression", expression, "returnByValue", true,
                "awaitPromise", true));
        if (r.has("exceptionDetails")) {
            throw new IllegalStateException("script failed: " + expression + "\n" + r.get("exceptionDetails"));
        }
        return r.path("result").path("value");
    }

    String evalString(String expression) {
        return eval(expression).asText();
    }

    /** Polls a JavaScript condition until it holds; fails with what {@code describe} says about the page. */
    void waitFor(String condition, Duration timeout) {
        waitFor(condition, timeout, c -> "");
    }

    void waitFor(String condition, Duration timeout, Function<Chromium, String> describe) {
        long end = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < end) {
            if (eval("!!(" + condition + ")").asBoolean()) {
                return;
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        throw new AssertionError("timed out after " + timeout.toSeconds() + " s waiting for " + condition + ". "
                + describe.apply(this));
    }

    /** A PNG of the whole page (beyond the viewport when the page is taller). */
    void screenshot(Path file) throws IOException {
        JsonNode metrics = send("Page.getLayoutMetrics", Map.of());
        JsonNode content = metrics.get("cssContentSize");
        // Beyond the viewport only when the page is taller: that capture resizes the view, which moves
        // hover state (a tooltip shown for the picture would go).
        boolean taller = content.get("height").asDouble() > metrics.at("/cssLayoutViewport/clientHeight").asDouble();
        Map<String, Object> clip = Map.of("x", 0, "y", 0, "width", content.get("width").asDouble(),
                "height", content.get("height").asDouble(), "scale", 1);
        JsonNode shot = send("Page.captureScreenshot", Map.of("format", "png", "captureBeyondViewport", taller,
                "clip", clip));
        Files.createDirectories(file.toAbsolutePath().getParent());
        Files.write(file, Base64.getDecoder().decode(shot.get("data").asText()));
    }

    @Override
    public void close() {
        try {
            socket.sendClose(WebSocket.NORMAL_CLOSURE, "done").get(2, TimeUnit.SECONDS);
        } catch (Exception e) {
            // The browser is being stopped either way.
        }
        process.descendants().forEach(ProcessHandle::destroy); // renderers, GPU and network helpers
        process.destroy();
        try {
            if (!process.waitFor(5, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        deleteTree(profile);
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            // A temporary directory left behind is harmless.
        }
    }
}
