package ai.punica.router;

import ai.punica.cluster.EngineState;
import ai.punica.cluster.Placement;
import ai.punica.cluster.PlacementPolicy;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.WebServer;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.URI;
import java.net.UnknownHostException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code punica router}: Punica's scheduler over {@code punica serve} processes (docs/cluster.md). It places each
 * request on an engine process by a {@link PlacementPolicy} over their states (read from
 * {@code GET /v1/engine/state}, which is also the health probe), passes the answer through, and when an engine
 * dies mid-stream continues the stream on another one from the tokens the client already has
 * ({@code POST /v1/engine/continue}): the client sees the same SSE frames, no error.
 *
 * <pre>
 *  client ──► router ──POST (X-Punica-Token-Ids: 1)──► engine A ──events (": tokens ..." + data)──► router
 *                │                                                  router ──data frames only──► client
 *                └── A breaks: POST /v1/engine/continue {request, id, created, generated_token_ids} ──► engine B
 * </pre>
 */
public final class Router implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(Router.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String TOKEN_IDS_HEADER = "X-Punica-Token-Ids";
    private static final String MIGRATABLE_HEADER = "X-Punica-Migratable";
    private static final String MIGRATION_HEADER = "X-Punica-Migration";
    private static final String PREEMPTED_EVENT = "punica.preempted";
    private static final long MAX_BODY_BYTES = 8L << 20;

    /**
     * @param engines       engine servers' base URLs (static membership), or empty with {@code dns}
     * @param dns           NAME:PORT re-resolved at every probe (a Kubernetes headless Service), or null
     * @param policy        placement policy
     * @param probeInterval how often every engine's state is read
     * @param queueCapacity requests held (FIFO) while no engine has room; beyond it, 429 with Retry-After
     * @param queueTimeout  the longest a request waits in that queue before it is refused the same way
     * @param migrate       move a stream its engine preempts (out of KV pages) to another engine with room
     */
    public record Config(List<URI> engines, String dns, PlacementPolicy policy, Duration probeInterval, String host,
                         int port, int queueCapacity, Duration queueTimeout, boolean migrate) {
        /** With a queue of 256 requests waiting up to 60 s, and migration on. */
        public Config(List<URI> engines, String dns, PlacementPolicy policy, Duration probeInterval, String host,
                      int port) {
            this(engines, dns, policy, probeInterval, host, port, 256, Duration.ofSeconds(60), true);
        }

        public Config {
            if (queueCapacity < 0) {
                throw new IllegalArgumentException("--queue " + queueCapacity + " must not be negative");
            }
            if (queueTimeout.isNegative()) {
                throw new IllegalArgumentException("--queue-timeout " + queueTimeout + " must not be negative");
            }
            engines = List.copyOf(engines);
            if (engines.isEmpty() == (dns == null)) {
                throw new IllegalArgumentException("give engine URLs or a DNS name, one of the two");
            }
            Set<URI> seen = new HashSet<>();
            for (URI u : engines) {
                if (!"http".equals(u.getScheme()) || u.getHost() == null || u.getPort() < 0) {
                    throw new IllegalArgumentException("engine URL " + u + " is not http://HOST:PORT");
                }
                if (!seen.add(URI.create("http://" + u.getHost() + ":" + u.getPort()))) {
                    throw new IllegalArgumentException("engine URL " + u + " is given twice");
                }
            }
            if (dns != null && !dns.matches("[^:\\s]+:\\d{1,5}")) {
                throw new IllegalArgumentException("--engine-dns " + dns + " is not NAME:PORT");
            }
        }
    }

    private final Config config;
    private final List<RemoteEngine> engines = new CopyOnWriteArrayList<>();
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(2)).build();
    private final AtomicLong failovers = new AtomicLong();
    private final AtomicLong lostStreams = new AtomicLong();
    /** Streams moved to another engine when theirs preempted them; offers no engine had room for. */
    private final AtomicLong migrations = new AtomicLong();
    private final AtomicLong migrationsDeclined = new AtomicLong();
    private final RouterQueue queue;
    private int previous = -1;
    private volatile boolean closed;
    private Thread prober;
    private WebServer server;

    public Router(Config config) {
        this.config = config;
        this.queue = new RouterQueue(config.queueCapacity(), config.queueTimeout());
        for (URI u : config.engines()) {
            engines.add(new RemoteEngine(URI.create("http://" + u.getHost() + ":" + u.getPort())));
        }
    }

    /** Probes every engine once, then serves; engines that are down now are probed again and join when up. */
    public Router start() {
        refreshMembership();
        probeAll();
        prober = Thread.ofPlatform().daemon(true).name("punica-router-probe").start(() -> {
            while (!closed) {
                try {
                    Thread.sleep(config.probeInterval());
                } catch (InterruptedException e) {
                    return;
                }
                refreshMembership();
                probeAll();
                queue.wake();
            }
        });
        server = WebServer.builder().host(config.host()).port(config.port()).shutdownHook(false)
                .routing(this::routes).build().start();
        log.info("routing to {} engines ({} available) on http://{}:{} ({})", engines.size(),
                engines.stream().filter(RemoteEngine::available).count(), config.host(), server.port(),
                config.policy().name());
        return this;
    }

    public int port() {
        return server.port();
    }

    /** Streams continued on another engine after theirs broke. */
    public long failovers() {
        return failovers.get();
    }

    /** Streams moved to another engine after theirs preempted them for lack of KV pages. */
    public long migrations() {
        return migrations.get();
    }

    /** Preemptions offered by engines that the router let stay (no other engine had room). */
    public long migrationsDeclined() {
        return migrationsDeclined.get();
    }

    @Override
    public void close() {
        closed = true;
        if (prober != null) {
            prober.interrupt();
        }
        if (server != null) {
            server.stop();
        }
    }

    private void routes(HttpRouting.Builder r) {
        r.post("/v1/completions", (req, res) -> forward(req, res, "completions", "/v1/completions"))
                .post("/v1/chat/completions", (req, res) -> forward(req, res, "chat", "/v1/chat/completions"))
                .get("/v1/models", this::models)
                .get("/v1/router/state", this::state)
                .get("/metrics", this::metrics)
                .get("/health", (req, res) -> {
                    if (engines.stream().anyMatch(RemoteEngine::available)) {
                        res.status(Status.OK_200).send();
                    } else {
                        sendError(res, 503, "server_error", "service_unavailable", "No engine is available.");
                    }
                });
    }

    // ---- membership and health ------------------------------------------------------------------

    private void refreshMembership() {
        if (config.dns() == null) {
            return;
        }
        String[] parts = config.dns().split(":");
        Set<URI> now = new LinkedHashSet<>();
        try {
            for (InetAddress a : InetAddress.getAllByName(parts[0])) {
                String host = a.getHostAddress().contains(":") ? "[" + a.getHostAddress() + "]" : a.getHostAddress();
                now.add(URI.create("http://" + host + ":" + parts[1]));
            }
        } catch (UnknownHostException e) {
            log.warn("{} does not resolve: {}; keeping the engines known so far", parts[0], e.getMessage());
            return;
        }
        for (URI u : now) {
            if (engines.stream().noneMatch(e -> e.base().equals(u))) {
                engines.add(new RemoteEngine(u));
                log.info("engine {} joined ({})", u, config.dns());
            }
        }
        engines.removeIf(e -> !now.contains(e.base()) && e.inFlight.get() == 0);
    }

    private void probeAll() {
        // An engine busy enough to take a second to answer is still up: only a longer silence takes it out.
        Duration timeout = Duration.ofSeconds(3);
        for (RemoteEngine e : engines) {
            e.probe(http, timeout);
        }
    }

    /** The policy's engine for a request, among those not tried yet; null when none has room. */
    private synchronized RemoteEngine choose(String adapter, int tokens, Set<RemoteEngine> tried) {
        List<RemoteEngine> list = List.copyOf(engines);
        List<EngineState> states = new ArrayList<>();
        for (RemoteEngine e : list) {
            EngineState s = e.state();
            states.add(tried.contains(e) ? new EngineState(s.running(), s.maxRunning(), s.freeKvPages(), s.pageSize(),
                    s.residentAdapters(), false) : s);
        }
        int i = config.policy().choose(states, new Placement(adapter, tokens), previous);
        if (i < 0) {
            return null;
        }
        previous = i;
        RemoteEngine chosen = list.get(i);
        chosen.placements.incrementAndGet();
        return chosen;
    }

    // ---- forwarding -----------------------------------------------------------------------------

    private void forward(ServerRequest req, ServerResponse res, String endpoint, String path) throws IOException {
        byte[] body;
        try (InputStream in = req.content().inputStream()) {
            body = in.readNBytes((int) MAX_BODY_BYTES + 1);
        }
        if (body.length > MAX_BODY_BYTES) {
            sendError(res, 413, "invalid_request_error", null, "The request body is larger than " + MAX_BODY_BYTES
                    + " bytes.");
            return;
        }
        ObjectNode request = null;
        try {
            if (JSON.readTree(body) instanceof ObjectNode o) {
                request = o;
            }
        } catch (IOException e) {
            // Not JSON: an engine answers it with its own 400.
        }
        boolean continuable = request != null && request.path("stream").asBoolean(false)
                && request.path("n").asInt(1) == 1;
        if (continuable && !request.has("seed") && request.path("temperature").asDouble(1.0) != 0) {
            // A sampled stream continued elsewhere must draw the same numbers: fix its seed now.
            request.put("seed", ThreadLocalRandom.current().nextLong(1L << 53));
            body = JSON.writeValueAsBytes(request);
        }
        String adapter = request == null ? null : request.path("model").asText(null);
        int tokens = Math.max(1, body.length / 4); // a prompt's tokens, estimated; the engine has the tokenizer
        Set<RemoteEngine> tried = new HashSet<>();
        String authorization = req.headers().first(HeaderNames.AUTHORIZATION).orElse(null);
        while (true) {
            java.util.function.BooleanSupplier noEngine = () -> engines.stream()
                    .noneMatch(e -> e.available() && !tried.contains(e));
            RouterQueue.Outcome<RemoteEngine> admitted;
            try {
                admitted = noEngine.getAsBoolean() ? new RouterQueue.Outcome<>(null, RouterQueue.Refusal.NO_ENGINE)
                        : queue.admit(() -> choose(adapter, tokens, tried), noEngine);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            RemoteEngine engine = admitted.placed();
            if (engine == null) {
                if (admitted.refusal() == RouterQueue.Refusal.NO_ENGINE) {
                    sendError(res, 503, "server_error", "service_unavailable", "No engine is available; retry later.");
                } else {
                    res.header(HeaderNames.RETRY_AFTER, "1");
                    sendError(res, 429, "rate_limit_error", "rate_limit_exceeded", admitted.refusal()
                            == RouterQueue.Refusal.FULL ? "Every engine is full and " + queue.capacity()
                            + " requests are waiting; retry later." : "Every engine stayed full for "
                            + config.queueTimeout().toSeconds() + " s; retry later.");
                }
                return;
            }
            tried.add(engine);
            HttpRequest.Builder rb = HttpRequest.newBuilder(engine.base().resolve(path))
                    .POST(HttpRequest.BodyPublishers.ofByteArray(body)).header("Content-Type", "application/json");
            if (authorization != null) {
                rb.header("Authorization", authorization);
            }
            if (continuable) {
                rb.header(TOKEN_IDS_HEADER, "1");
                if (config.migrate()) {
                    rb.header(MIGRATABLE_HEADER, "1");
                }
            }
            engine.inFlight.incrementAndGet();
            HttpResponse<InputStream> answer;
            try {
                answer = http.send(rb.build(), HttpResponse.BodyHandlers.ofInputStream());
            } catch (IOException e) {
                ended(engine);
                engine.markDown("unreachable: " + e);
                continue; // the client has seen nothing yet: another engine takes it whole
            } catch (InterruptedException e) {
                ended(engine);
                Thread.currentThread().interrupt();
                return;
            }
            if (!continuable || answer.statusCode() != 200) {
                try (InputStream in = answer.body()) {
                    copyWhole(answer, in, res);
                } finally {
                    ended(engine);
                }
                return;
            }
            new Relay(res, endpoint, request, authorization, tried).run(engine, answer.body());
            return;
        }
    }

    /** A request on {@code engine} ended (or never started): its place is free, the queue's head looks again. */
    private void ended(RemoteEngine engine) {
        engine.inFlight.decrementAndGet();
        queue.wake();
    }

    private static void copyWhole(HttpResponse<InputStream> answer, InputStream in, ServerResponse res)
            throws IOException {
        byte[] bytes = in.readAllBytes();
        res.status(Status.create(answer.statusCode()));
        answer.headers().firstValue("content-type").ifPresent(v -> res.header(HeaderNames.CONTENT_TYPE, v));
        answer.headers().firstValue("retry-after").ifPresent(v -> res.header(HeaderNames.RETRY_AFTER, v));
        res.send(bytes);
    }

    /** How an engine's stream ended for the relay. */
    private enum End {
        /** [DONE]: the client has the whole stream. */
        DONE,
        /** The stream broke (the engine died, say): continue on another engine. */
        BROKEN,
        /** The engine preempted the request ({@code punica.preempted}): it may move to an engine with room. */
        PREEMPTED
    }

    /**
     * One client stream: relays the engine's SSE events, keeping the data frames and dropping the token-id
     * comments (so the client gets the bytes one engine sends); on a broken engine stream continues on another
     * engine from the tokens of the events relayed whole; on a preemption, moves the stream to an engine with
     * room, or lets it stay queued where it is.
     */
    private final class Relay {
        private final OutputStream out;
        private final String endpoint;
        private final ObjectNode request;
        private final String authorization;
        private final Set<RemoteEngine> tried;
        private final List<Integer> generated = new ArrayList<>();
        private String id;
        private long created;
        /** The continuation of the last {@code punica.preempted} event. */
        private JsonNode preempted;

        Relay(ServerResponse res, String endpoint, ObjectNode request, String authorization, Set<RemoteEngine> tried) {
            res.status(Status.OK_200);
            res.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
            res.header(HeaderNames.CACHE_CONTROL, "no-cache");
            res.header("X-Accel-Buffering", "no");
            this.out = res.outputStream();
            this.endpoint = endpoint;
            this.request = request;
            this.authorization = authorization;
            this.tried = tried;
        }

        void run(RemoteEngine engine, InputStream in) {
            RemoteEngine current = engine;
            BufferedReader stream = reader(in);
            boolean open = true; // whether current's stream is open and counted in its inFlight
            try (out) {
                while (true) {
                    End end;
                    try {
                        end = relay(stream);
                    } catch (IOException e) {
                        end = End.BROKEN;
                    }
                    closeQuietly(stream);
                    ended(current);
                    open = false;
                    if (end == End.DONE) {
                        return;
                    }
                    if (end == End.PREEMPTED) {
                        // The engine let the request go with its stream: it lives here until an engine takes it.
                        Moved moved = migrate(current);
                        if (moved != null) {
                            current = moved.engine();
                            stream = reader(moved.stream());
                            open = true;
                            continue;
                        }
                        log.warn("stream {} was preempted on {}, which would not take it back; it continues "
                                + "elsewhere", id, current.name());
                    } else {
                        current.markDown("its stream broke mid-response");
                        failovers.incrementAndGet();
                    }
                    InputStream next = null;
                    while (next == null) {
                        current = choose(request.path("model").asText(null), generated.size() + 1, tried);
                        if (current == null) {
                            lostStreams.incrementAndGet();
                            write(("data: {\"error\":{\"message\":\"The engine serving this stream failed and no "
                                    + "other engine can continue it.\",\"type\":\"server_error\",\"param\":null,"
                                    + "\"code\":\"service_unavailable\"}}\n\ndata: [DONE]\n\n")
                                    .getBytes(StandardCharsets.UTF_8));
                            return;
                        }
                        tried.add(current);
                        next = resumeOn(current, false, false);
                    }
                    log.info("stream {} continues on {} after {} tokens", id, current.name(), generated.size());
                    stream = reader(next);
                    open = true;
                }
            } catch (ClientGone | IOException e) {
                log.debug("client of {} left: {}", id, e.getMessage());
            } finally {
                if (open) {
                    closeQuietly(stream); // the engine sees its client leave and cancels the request
                    ended(current);
                }
            }
        }

        /** Where a preempted stream went: the engine that took it and the rest of its stream. */
        private record Moved(RemoteEngine engine, InputStream stream) {
        }

        /**
         * The router's side of the handshake (docs/cluster.md): the engine {@code source} preempted the request
         * and let it go with its stream; an engine with room for prompt + generated tokens, by the policy, is
         * asked to continue it ({@code POST /v1/engine/continue} with {@code X-Punica-Migration}, refused with 429
         * when it has no room after all). When none takes it, {@code source} continues it, at the head of its
         * queue where a request preempted there waits. The engine that took it, or null when not even
         * {@code source} did (it is shutting down, say).
         */
        private Moved migrate(RemoteEngine source) throws ClientGone {
            List<Integer> offered = new ArrayList<>();
            preempted.path("generated_token_ids").forEach(t -> offered.add(t.asInt()));
            if (!offered.equals(generated)) {
                // Cannot happen with an engine of this version; never continue from tokens the client lacks.
                log.warn("stream {}: the preemption's {} tokens differ from the {} relayed; it continues from those "
                        + "relayed", id, offered.size(), generated.size());
            }
            int tokens = preempted.path("prompt_token_ids").size() + generated.size();
            Set<RemoteEngine> asked = new HashSet<>();
            asked.add(source);
            while (true) {
                RemoteEngine target = choose(request.path("model").asText(null), tokens, asked);
                if (target == null) {
                    migrationsDeclined.incrementAndGet();
                    log.debug("stream {} stays on {}: no other engine has room for {} tokens", id, source.name(), tokens);
                    InputStream back = resumeOn(source, false, true);
                    return back == null ? null : new Moved(source, back);
                }
                asked.add(target);
                InputStream next = resumeOn(target, true, false);
                if (next != null) {
                    tried.add(target);
                    migrations.incrementAndGet();
                    log.info("stream {} moves from {} to {} after {} tokens (preempted there)", id, source.name(),
                            target.name(), generated.size());
                    return new Moved(target, next);
                }
            }
        }

        /**
         * The rest of the stream from {@code engine}, or null when it could not take it; with {@code migration},
         * only if it has room now; with {@code preempted}, it goes back to the engine that preempted it, at the head
         * of its queue.
         */
        private InputStream resumeOn(RemoteEngine engine, boolean migration, boolean preempted)
                throws ClientGone {
            HttpRequest.Builder rb;
            if (id == null) { // no frame sent yet (a completions stream sends none before its first text): start over
                generated.clear();
                rb = HttpRequest.newBuilder(engine.base().resolve(endpoint.equals("chat") ? "/v1/chat/completions"
                        : "/v1/completions")).header(TOKEN_IDS_HEADER, "1")
                        .POST(HttpRequest.BodyPublishers.ofByteArray(bytes(request)));
            } else {
                Map<String, Object> body = new LinkedHashMap<>();
                body.put("endpoint", endpoint);
                body.put("id", id);
                body.put("created", created);
                body.put("request", request);
                body.put("generated_token_ids", generated);
                if (preempted) {
                    body.put("preempted", true);
                }
                rb = HttpRequest.newBuilder(engine.base().resolve("/v1/engine/continue"))
                        .POST(HttpRequest.BodyPublishers.ofByteArray(bytes(body)));
                if (migration) {
                    rb.header(MIGRATION_HEADER, "1");
                }
            }
            if (config.migrate()) {
                rb.header(MIGRATABLE_HEADER, "1");
            }
            rb.header("Content-Type", "application/json");
            if (authorization != null) {
                rb.header("Authorization", authorization);
            }
            engine.inFlight.incrementAndGet();
            try {
                HttpResponse<InputStream> r = http.send(rb.build(), HttpResponse.BodyHandlers.ofInputStream());
                if (r.statusCode() == 200) {
                    return r.body();
                }
                String why = new String(r.body().readAllBytes(), StandardCharsets.UTF_8);
                ended(engine);
                if (migration && r.statusCode() == 429) {
                    log.debug("engine {} has no room for {}: {}", engine.name(), id, why);
                } else {
                    log.warn("engine {} refused to continue {}: HTTP {} {}", engine.name(), id, r.statusCode(), why);
                }
                return null;
            } catch (IOException e) {
                ended(engine);
                engine.markDown("unreachable: " + e);
                return null;
            } catch (InterruptedException e) {
                ended(engine);
                Thread.currentThread().interrupt();
                throw new ClientGone(e);
            }
        }

        /**
         * Relays events until [DONE], the end of the engine's stream, or a preemption event. Only whole events
         * count: a data frame is sent on, and its tokens taken as received, when its blank line has arrived.
         */
        private End relay(BufferedReader reader) throws IOException, ClientGone {
            List<Integer> eventTokens = new ArrayList<>();
            String data = null;
            String comment = null;
            String event = null;
            String line;
            while ((line = reader.readLine()) != null) {
                if (!line.isEmpty()) {
                    if (line.startsWith(": tokens ")) {
                        String[] parts = line.substring(9).split(" ", 2);
                        if (parts.length == 2) {
                            for (String t : parts[1].split(",")) {
                                eventTokens.add(Integer.parseInt(t));
                            }
                        }
                    } else if (line.startsWith(":")) {
                        comment = line;
                    } else if (line.startsWith("event: ")) {
                        event = line.substring(7);
                    } else if (line.startsWith("data: ")) {
                        data = line.substring(6);
                    }
                    continue;
                }
                // A whole event.
                if (PREEMPTED_EVENT.equals(event) && data != null) {
                    preempted = JSON.readTree(data);
                    if (id == null && preempted.hasNonNull("id")) {
                        id = preempted.get("id").asText();
                        created = preempted.path("created").asLong();
                    }
                    return End.PREEMPTED;
                }
                generated.addAll(eventTokens);
                eventTokens.clear();
                if (data != null) {
                    if (id == null && data.startsWith("{")) {
                        JsonNode n = JSON.readTree(data);
                        if (n.hasNonNull("id")) {
                            id = n.get("id").asText();
                            created = n.path("created").asLong();
                        }
                    }
                    write(("data: " + data + "\n\n").getBytes(StandardCharsets.UTF_8));
                    if (data.equals("[DONE]")) {
                        return End.DONE;
                    }
                } else if (comment != null) {
                    write((comment + "\n\n").getBytes(StandardCharsets.UTF_8));
                }
                data = null;
                comment = null;
                event = null;
            }
            return End.BROKEN;
        }

        private void write(byte[] bytes) throws ClientGone {
            try {
                out.write(bytes);
                out.flush();
            } catch (IOException | RuntimeException e) {
                throw new ClientGone(e);
            }
        }
    }

    private static BufferedReader reader(InputStream in) {
        return new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
    }

    private static void closeQuietly(BufferedReader reader) {
        try {
            reader.close();
        } catch (IOException e) {
            // The engine's connection is gone either way.
        }
    }

    /** The client closed its connection. */
    private static final class ClientGone extends Exception {
        ClientGone(Throwable cause) {
            super(cause.toString(), cause);
        }
    }

    private static byte[] bytes(Object value) {
        try {
            return JSON.writeValueAsBytes(value);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    // ---- models, state --------------------------------------------------------------------------

    private void models(ServerRequest req, ServerResponse res) throws IOException {
        for (RemoteEngine e : engines) {
            if (!e.available()) {
                continue;
            }
            try {
                HttpRequest.Builder rb = HttpRequest.newBuilder(e.base().resolve("/v1/models")).GET();
                req.headers().first(HeaderNames.AUTHORIZATION).ifPresent(v -> rb.header("Authorization", v));
                HttpResponse<InputStream> r = http.send(rb.build(), HttpResponse.BodyHandlers.ofInputStream());
                try (InputStream in = r.body()) {
                    copyWhole(r, in, res);
                }
                return;
            } catch (IOException ex) {
                e.markDown("unreachable: " + ex);
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        sendError(res, 503, "server_error", "service_unavailable", "No engine is available.");
    }

    /** GET /v1/router/state: each engine process, whether it is up (and why not), its load; the failovers. */
    private void state(ServerRequest req, ServerResponse res) throws IOException {
        List<RouterState.EngineEntry> list = new ArrayList<>();
        for (RemoteEngine e : engines) {
            EngineState s = e.state();
            list.add(new RouterState.EngineEntry(e.base().toString(), e.available(), e.problem(), s.running(),
                    s.maxRunning(), s.freeKvPages(), e.placements.get()));
        }
        var body = new RouterState("router.state", config.policy().name(), failovers.get(), lostStreams.get(),
                migrations.get(), migrationsDeclined.get(), queue.length(), queue.capacity(),
                queue.refusedFull() + queue.refusedTimeout(), list);
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(JSON.writeValueAsBytes(body));
    }

    /**
     * GET /metrics, Prometheus text: the router's queue, its placements per engine, and the streams it moved
     * (reason {@code kv_exhausted}: the engine preempted it; {@code failover}: the engine's stream broke).
     */
    private void metrics(ServerRequest req, ServerResponse res) {
        StringBuilder m = new StringBuilder();
        metric(m, "punica_router_queue_length", "gauge", "requests waiting in the router's queue for an engine "
                + "with room", "", queue.length());
        metric(m, "punica_router_queue_capacity", "gauge", "requests the router's queue holds", "", queue.capacity());
        metric(m, "punica_router_queued_total", "counter", "requests that waited in the router's queue", "",
                queue.queued());
        m.append("# HELP punica_router_queue_refusals_total requests refused with 429: the queue was full, or they "
                + "waited --queue-timeout\n# TYPE punica_router_queue_refusals_total counter\n");
        m.append("punica_router_queue_refusals_total{reason=\"full\"} ").append(queue.refusedFull()).append('\n');
        m.append("punica_router_queue_refusals_total{reason=\"timeout\"} ").append(queue.refusedTimeout()).append('\n');
        m.append("# HELP punica_router_migrations_total streams the router moved to another engine\n"
                + "# TYPE punica_router_migrations_total counter\n");
        m.append("punica_router_migrations_total{reason=\"kv_exhausted\"} ").append(migrations.get()).append('\n');
        m.append("punica_router_migrations_total{reason=\"failover\"} ").append(failovers.get()).append('\n');
        metric(m, "punica_router_migrations_declined_total", "counter", "preemptions no other engine had room for "
                + "(the request stayed queued on its engine)", "", migrationsDeclined.get());
        metric(m, "punica_router_lost_streams_total", "counter", "streams no engine could continue", "",
                lostStreams.get());
        m.append("# HELP punica_router_placements_total requests placed on each engine\n"
                + "# TYPE punica_router_placements_total counter\n");
        for (RemoteEngine e : engines) {
            m.append("punica_router_placements_total{engine=\"").append(e.name()).append("\"} ")
                    .append(e.placements.get()).append('\n');
        }
        m.append("# HELP punica_router_requests_in_flight requests the router has open on each engine\n"
                + "# TYPE punica_router_requests_in_flight gauge\n");
        for (RemoteEngine e : engines) {
            m.append("punica_router_requests_in_flight{engine=\"").append(e.name()).append("\"} ")
                    .append(e.inFlight.get()).append('\n');
        }
        m.append("# HELP punica_router_engine_up 1 while the engine answers its state probe\n"
                + "# TYPE punica_router_engine_up gauge\n");
        for (RemoteEngine e : engines) {
            m.append("punica_router_engine_up{engine=\"").append(e.name()).append("\"} ")
                    .append(e.available() ? 1 : 0).append('\n');
        }
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
        res.send(m.toString().getBytes(StandardCharsets.UTF_8));
    }

    private static void metric(StringBuilder m, String name, String type, String help, String labels, long value) {
        m.append("# HELP ").append(name).append(' ').append(help).append('\n');
        m.append("# TYPE ").append(name).append(' ').append(type).append('\n');
        m.append(name).append(labels).append(' ').append(value).append('\n');
    }

    private static void sendError(ServerResponse res, int status, String type, String code, String message) {
        Map<String, Object> detail = new LinkedHashMap<>();
        detail.put("message", message);
        detail.put("type", type);
        detail.put("param", null);
        detail.put("code", code);
        res.status(Status.create(status));
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(bytes(Map.of("error", detail)));
    }
}
