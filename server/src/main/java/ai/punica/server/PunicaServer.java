package ai.punica.server;

import ai.punica.cluster.EngineCluster;
import ai.punica.cluster.GenerationService;
import ai.punica.cluster.LocalEngineHandle;
import ai.punica.engine.Completion;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineException;
import ai.punica.engine.EngineLoad;
import ai.punica.server.GenerationJob.Endpoint;
import ai.punica.server.OpenAiJson.ModelCard;
import io.helidon.http.HeaderNames;
import io.helidon.http.Method;
import io.helidon.http.Status;
import io.helidon.webserver.WebServer;
import io.helidon.webserver.http.FilterChain;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.http.RoutingRequest;
import io.helidon.webserver.http.RoutingResponse;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The OpenAI-compatible HTTP server in front of one {@link Engine}: completions and chat (whole or
 * streamed as SSE), models, runtime adapter loading, health and Prometheus metrics, with the routes,
 * bodies and errors of OpenAI's API and vLLM's extensions. Runs on Helidon SE (a virtual thread per
 * request; a handler blocks on its request's event queue, never the engine thread).
 *
 * <pre>
 *   var server = PunicaServer.builder().engine(engine).port(8000).apiKey(key).build().start();
 *   ...
 *   server.stop(Duration.ofSeconds(30));
 * </pre>
 */
public final class PunicaServer {
    private static final Logger log = LoggerFactory.getLogger(PunicaServer.class);
    private static final Set<String> KNOWN_PATHS = Set.of("/v1/completions", "/v1/chat/completions", "/v1/models",
            "/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/health", "/metrics", "/tokenize", "/detokenize",
            "/version", "/ping", "/v1/engine/state", "/v1/engine/continue", ConsoleRoutes.ADAPTERS_PATH,
            ConsoleRoutes.STATS_PATH, "/");
    /** What {@code GET /version} reports. */
    static final String VERSION = "0.1.0";
    /** A router asks for the token ids of each streamed event with this header (see GenerationExchange). */
    static final String TOKEN_IDS_HEADER = "X-Punica-Token-Ids";
    /** A router marks a stream it can move to another process when this one preempts it (docs/cluster.md). */
    /** A refused body up to this size is read to its end before the 413 (see {@link #drain}). */
    private static final long DRAIN_LIMIT_BYTES = 16L << 20;
    static final String MIGRATABLE_HEADER = "X-Punica-Migratable";
    /** On /v1/engine/continue: a migration, taken only where an engine has room for it now (else 429). */
    static final String MIGRATION_HEADER = "X-Punica-Migration";

    private enum State { CREATED, SERVING, STOPPING, STOPPED }

    /** The first engine: model, tokenizer and adapter names are the same on every engine. */
    private final Engine engine;
    /** Where generations go: the engine, or the scheduler over several ({@link Builder#cluster}). */
    private final GenerationService generations;
    private final List<Engine> engines;
    private final EngineCluster cluster;
    private final String host;
    private final int requestedPort;
    private final byte[] apiKey;
    private final long maxBodyBytes;
    private final String modelRoot;
    private final RequestParser parser;
    private final AdapterAdmin adapterAdmin;
    private final ServerMetrics metrics;
    private final TokenText tokenText;
    private final ConsoleRoutes console;
    private final long createdEpochSeconds = System.currentTimeMillis() / 1000;
    private final Set<GenerationExchange> inFlight = ConcurrentHashMap.newKeySet();
    private final AtomicInteger activeExchanges = new AtomicInteger();
    private final ConnectionLimits limits;
    private final ClientConnections connections;
    private final Tokenization tokenization;
    private final List<String> allowedOrigins;
    private volatile State state = State.CREATED;
    private WebServer webServer;

    private PunicaServer(Builder b) {
        this.engine = Objects.requireNonNull(b.engines.isEmpty() ? null : b.engines.getFirst(),
                "an engine is required");
        this.generations = b.cluster != null ? b.cluster : GenerationService.of(engine);
        this.engines = b.engines;
        this.cluster = b.cluster;
        this.host = b.host;
        this.requestedPort = b.port;
        this.apiKey = b.apiKey == null ? null : b.apiKey.getBytes(StandardCharsets.UTF_8);
        this.maxBodyBytes = b.maxBodyBytes;
        this.modelRoot = b.modelRoot;
        this.parser = new RequestParser(engine, b.maxChoices);
        this.allowedOrigins = List.copyOf(b.allowedOrigins);
        this.adapterAdmin = new AdapterAdmin(b.engines.stream().map(Engine::adapters).toList(),
                engine.baseModelName(), b.adapterRoots);
        this.metrics = new ServerMetrics(b.engines, b.cluster);
        this.tokenText = new TokenText(engine.tokenizer());
        this.tokenization = new Tokenization(parser, engine.tokenizer(), tokenText, engine.maxModelLen());
        this.limits = b.limits;
        this.connections = new ClientConnections(b.limits);
        List<LiveStats.Lane> lanes = new ArrayList<>();
        for (int i = 0; i < b.engines.size(); i++) {
            lanes.add(new LiveStats.Lane(Integer.toString(i), b.engines.get(i)));
        }
        LiveStats liveStats = new LiveStats(lanes);
        if (b.cluster != null) {
            b.cluster.addMigrationListener((from, to, c) -> liveStats.migration(Integer.toString(from),
                    Integer.toString(to), c.requestId(), c.adapter(), c.totalTokens()));
        }
        this.console = new ConsoleRoutes(liveStats);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Binds the port and starts serving; returns when requests are accepted. */
    public synchronized PunicaServer start() {
        if (state != State.CREATED) {
            throw new IllegalStateException("the server was already started");
        }
        // Helidon reports a port it cannot bind with stack traces in its log and a server that is not
        // running; trying the address first turns the usual case into one line.
        checkCanListen(host, requestedPort);
        webServer = WebServer.builder()
                .host(host)
                .port(requestedPort)
                .shutdownHook(false) // the CLI drains requests on SIGTERM itself (stop with a deadline)
                .connectionSelectors(List.of(connections))
                .directHandlers(ProtocolErrors.handlers())
                .maxTcpConnections(limits.maxConnections())
                // Covers a client that connects and sends nothing (before a ClientConnection exists).
                .connectionOptions(o -> o.readTimeout(limits.requestReadTimeout()))
                .routing(this::routes)
                .build()
                .start();
        if (!webServer.isRunning() || webServer.port() < 0) {
            // Helidon logs the bind failure and returns a server that is not running; say why in one line.
            String reason = bindFailure(host, requestedPort);
            throw new ListenException(host, requestedPort, reason != null ? reason : "the listener did not start");
        }
        state = State.SERVING;
        console.start();
        log.info("serving {} (adapters: {}) on http://{}:{}", engine.baseModelName(),
                String.join(", ", engine.adapters().registered()), host, webServer.port());
        return this;
    }

    /** The server could not listen on its address: the message says which and why, in one line. */
    public static final class ListenException extends RuntimeException {
        ListenException(String host, int port, String reason) {
            super("cannot listen on " + host + ":" + port + ": " + reason);
        }
    }

    /**
     * Throws {@link ListenException} if {@code host:port} cannot be bound now, so a caller can find out
     * before the minutes a large model takes to load. Port 0 (any free port) always can.
     */
    public static void checkCanListen(String host, int port) {
        if (port == 0) {
            return;
        }
        String reason = bindFailure(host, port);
        if (reason != null) {
            throw new ListenException(host, port, reason);
        }
    }

    /** Why the address cannot be bound, or null if it can (bound and released at once, as Helidon binds it). */
    private static String bindFailure(String host, int port) {
        try (var probe = new java.net.ServerSocket()) {
            probe.setReuseAddress(true);
            probe.bind(new java.net.InetSocketAddress(host, port));
            return null;
        } catch (java.net.BindException e) {
            String reason = e.getMessage() == null ? "" : e.getMessage();
            return reason.toLowerCase(java.util.Locale.ROOT).contains("in use")
                    ? "the port is already in use (another server is running; stop it or pass another --port)"
                    : reason + " (check --host and --port)";
        } catch (IOException | RuntimeException e) {
            return e.getMessage() + " (check --host and --port)";
        }
    }

    /** The bound port (the ephemeral one when built with port 0). */
    public int port() {
        if (webServer == null) {
            throw new IllegalStateException("the server is not started");
        }
        return webServer.port();
    }

    public String baseUrl() {
        String h = host.contains(":") ? "[" + host + "]" : host;
        return "http://" + h + ":" + port();
    }

    /**
     * Graceful stop: new requests are answered 503 at once; requests already running may finish
     * until {@code deadline}; those still running then are cancelled (streams end with
     * finish_reason "abort", whole responses with 503); then the listener closes. The engine is not
     * closed: it belongs to whoever built it.
     */
    public void stop(Duration deadline) {
        synchronized (this) {
            if (state != State.SERVING) {
                state = State.STOPPED;
                return;
            }
            state = State.STOPPING;
        }
        long end = System.nanoTime() + deadline.toNanos();
        log.info("stopping: {} requests in flight, waiting up to {} ms", activeExchanges.get(), deadline.toMillis());
        waitForExchanges(end);
        if (activeExchanges.get() > 0) {
            log.info("deadline reached; cancelling {} requests", activeExchanges.get());
            for (GenerationExchange e : inFlight) {
                e.cancel();
            }
            waitForExchanges(System.nanoTime() + Duration.ofSeconds(5).toNanos());
        }
        console.close();
        webServer.stop();
        state = State.STOPPED;
        log.info("stopped");
    }

    private void waitForExchanges(long endNanos) {
        while (activeExchanges.get() > 0 && System.nanoTime() < endNanos) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    // ---- routing --------------------------------------------------------------------------------

    private void routes(HttpRouting.Builder r) {
        r.addFilter(this::trackConnection)
                .addFilter(this::cors)
                .addFilter(this::authorize)
                .post("/v1/completions", guard((req, res) -> generate(req, res, false)))
                .post("/v1/chat/completions", guard((req, res) -> generate(req, res, true)))
                .get("/v1/models", guard(this::models))
                .get("/v1/models/*", guard(this::model))
                .post("/v1/load_lora_adapter", guard((req, res) -> sendText(res,
                        adapterAdmin.load(readBody(req, OpenAiRequests.LoadLora.class)))))
                .post("/v1/unload_lora_adapter", guard((req, res) -> sendText(res,
                        adapterAdmin.unload(readBody(req, OpenAiRequests.UnloadLora.class)))))
                .post("/tokenize", guard((req, res) -> sendJson(res, Status.OK_200,
                        tokenization.tokenize(readBody(req, OpenAiRequests.TokenizeBody.class)))))
                .post("/detokenize", guard((req, res) -> sendJson(res, Status.OK_200,
                        tokenization.detokenize(readBody(req, OpenAiRequests.DetokenizeBody.class)))))
                .get("/version", (req, res) -> sendJson(res, Status.OK_200, new OpenAiJson.Version(VERSION)))
                .get("/ping", this::health)
                .post("/ping", this::health)
                .post("/v1/engine/continue", guard(this::continueGeneration))
                .get("/v1/engine/state", guard((req, res) -> sendJson(res, Status.OK_200,
                        EngineStateBody.of(engines, cluster))))
                .get("/health", this::health)
                .get("/metrics", this::metrics)
                .register(console)
                .any(guard(this::unknownRoute));
    }

    /**
     * Tells the request's connection where it is in its cycle (for its time limits), and closes it
     * after the response when the client sent {@code Connection: close}.
     */
    private void trackConnection(FilterChain chain, RoutingRequest req, RoutingResponse res) {
        ClientConnection connection = connections.of(req);
        boolean close = req.headers().first(HeaderNames.CONNECTION)
                .map(v -> v.toLowerCase(java.util.Locale.ROOT).contains("close")).orElse(false)
                || connection != null && connection.closesAfterResponse();
        if (connection != null) {
            connection.requestStarted();
        }
        if (close) {
            res.header(HeaderNames.CONNECTION, "close");
        }
        try {
            chain.proceed();
        } finally {
            if (connection != null) {
                // A handler that could not read the whole body answers with Connection: close too.
                connection.responseDone(close || res.headers().first(HeaderNames.CONNECTION)
                        .map(v -> v.equalsIgnoreCase("close")).orElse(false));
            }
        }
    }

    /**
     * CORS as vLLM's server answers it (Starlette's middleware): a request from an allowed origin gets
     * {@code Access-Control-Allow-Origin}; a preflight ({@code OPTIONS} with
     * {@code Access-Control-Request-Method}) is answered here, before the API-key check, since browsers
     * send it without credentials. Origins not allowed get no CORS headers, so the browser refuses.
     */
    private void cors(FilterChain chain, RoutingRequest req, RoutingResponse res) {
        String origin = req.headers().first(HeaderNames.ORIGIN).orElse(null);
        boolean any = allowedOrigins.contains("*");
        if (origin == null || !(any || allowedOrigins.contains(origin))) {
            chain.proceed();
            return;
        }
        res.header(HeaderNames.ACCESS_CONTROL_ALLOW_ORIGIN, any ? "*" : origin);
        if (!any) {
            res.header(HeaderNames.VARY, "Origin");
        }
        if (req.prologue().method() == Method.OPTIONS
                && req.headers().contains(HeaderNames.ACCESS_CONTROL_REQUEST_METHOD)) {
            res.header(HeaderNames.ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS");
            res.header(HeaderNames.ACCESS_CONTROL_ALLOW_HEADERS, req.headers()
                    .first(HeaderNames.ACCESS_CONTROL_REQUEST_HEADERS).orElse("Authorization, Content-Type"));
            res.header(HeaderNames.ACCESS_CONTROL_MAX_AGE, "600");
            res.status(Status.OK_200).send();
            return;
        }
        chain.proceed();
    }

    /**
     * Bearer-token check for the API (/v1/...). /health and /metrics stay open as in vLLM, so probes
     * and scrapers need no secret. The comparison takes the same time whatever the key's prefix.
     */
    private void authorize(FilterChain chain, RoutingRequest req, RoutingResponse res) {
        if (apiKey != null && req.path().path().startsWith("/v1/")) {
            String header = req.headers().first(HeaderNames.AUTHORIZATION).orElse("");
            byte[] given = header.startsWith("Bearer ")
                    ? header.substring(7).trim().getBytes(StandardCharsets.UTF_8) : new byte[0];
            if (!MessageDigest.isEqual(given, apiKey)) {
                sendError(res, ApiException.unauthorized(header.isEmpty()
                        ? "Missing API key: send it as the header `Authorization: Bearer <key>`."
                        : "Incorrect API key provided."));
                return;
            }
        }
        chain.proceed();
    }

    @FunctionalInterface
    private interface ApiHandler {
        void handle(ServerRequest req, ServerResponse res) throws Exception;
    }

    /** Every failure of a handler becomes an OpenAI error body with its status (500 for bugs, logged). */
    private io.helidon.webserver.http.Handler guard(ApiHandler handler) {
        return (req, res) -> {
            try {
                handler.handle(req, res);
            } catch (ApiException e) {
                sendError(res, e);
            } catch (EngineException e) {
                if (e.kind() == EngineException.Kind.INTERNAL) {
                    log.error("request {} {} failed in the engine", req.prologue().method(), req.path().path(), e);
                }
                sendError(res, ApiException.from(e));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                sendError(res, ApiException.unavailable("The request was interrupted (server stopping); retry it."));
            } catch (Exception e) {
                log.error("request {} {} failed", req.prologue().method(), req.path().path(), e);
                sendError(res, ApiException.internal("Internal server error: " + e.getClass().getSimpleName()
                        + (e.getMessage() == null ? "" : ": " + e.getMessage())));
            }
        };
    }

    private void unknownRoute(ServerRequest req, ServerResponse res) {
        String path = req.path().path();
        Method method = req.prologue().method();
        if (KNOWN_PATHS.contains(path)) {
            throw ApiException.methodNotAllowed("Method " + method.text() + " is not allowed on " + path + ".");
        }
        throw ApiException.notFound(null, "unknown_url", "Unknown request URL: " + method.text() + " " + path
                + ". The endpoints are " + String.join(", ", KNOWN_PATHS.stream().sorted().toList()) + ".");
    }

    // ---- generation -----------------------------------------------------------------------------

    @FunctionalInterface
    private interface Generation {
        void run(long arrivalNanos) throws Exception;
    }

    /** Runs a generation counted among the active ones, which stop() waits for; refused (503) once stopping. */
    private void counted(Generation generation) throws Exception {
        long arrival = System.nanoTime();
        if (state != State.SERVING) {
            throw ApiException.unavailable("The server is shutting down; send the request to another replica.");
        }
        activeExchanges.incrementAndGet();
        try {
            // Re-check after counting ourselves, so stop() never misses a request that slipped past the check.
            if (state != State.SERVING) {
                throw ApiException.unavailable("The server is shutting down; send the request to another replica.");
            }
            generation.run(arrival);
        } finally {
            activeExchanges.decrementAndGet();
        }
    }

    private void generate(ServerRequest req, ServerResponse res, boolean chat) throws Exception {
        counted(arrival -> {
            // parse -> validate -> submit
            String id = (chat ? Endpoint.CHAT : Endpoint.COMPLETIONS).idPrefix + randomHex();
            GenerationJob job = chat ? parser.chat(readBody(req, OpenAiRequests.ChatBody.class, id))
                    : parser.completion(readBody(req, OpenAiRequests.CompletionBody.class, id));
            var exchange = new GenerationExchange(generations, metrics, job, id, arrival);
            if (req.headers().contains(HeaderNames.create(TOKEN_IDS_HEADER))) {
                exchange.withTokenIds();
                if (req.headers().contains(HeaderNames.create(MIGRATABLE_HEADER))) {
                    exchange.migratable();
                }
            }
            run(exchange, job, id, System.currentTimeMillis() / 1000, req, res);
        });
    }

    /**
     * POST /v1/engine/continue: a router's fail-over. The body names the original request as the client sent it
     * ({@code request}, on {@code endpoint} "completions" or "chat"), its response {@code id} and {@code created},
     * and the {@code generated_token_ids} the client has already received; the answer is the rest of the stream,
     * frames as the original server would have sent them (token ids in comment lines); {@code preempted: true}
     * brings back a request this server handed to the router on preemption, to the head of its queue. Streams of
     * one choice only; a sampled request must carry its seed (a router adds one before the first attempt).
     */
    private void continueGeneration(ServerRequest req, ServerResponse res) throws Exception {
        counted(arrival -> {
            OpenAiRequests.ContinueBody body = readBody(req, OpenAiRequests.ContinueBody.class);
            String endpoint = required(body.endpoint(), "endpoint");
            if (!endpoint.equals("completions") && !endpoint.equals("chat")) {
                throw ApiException.badRequest("endpoint", "endpoint must be \"completions\" or \"chat\", got \""
                        + endpoint + "\"");
            }
            String id = required(body.id(), "id");
            Long created = required(body.created(), "created");
            if (body.request() == null || !body.request().isObject()) {
                throw ApiException.badRequest("request", "request (the original request body, an object) is required");
            }
            byte[] original = OpenAiJson.bytes(body.request());
            int[] generated = body.generatedTokenIds() == null ? new int[0]
                    : body.generatedTokenIds().stream().mapToInt(Integer::intValue).toArray();
            GenerationJob job = endpoint.equals("chat")
                    ? parser.chat(RequestBodies.read(original, OpenAiRequests.ChatBody.class).body())
                    : parser.completion(RequestBodies.read(original, OpenAiRequests.CompletionBody.class).body());
            if (!job.stream() || job.choices() != 1) {
                throw ApiException.badRequest("request", "only a streamed request of one choice can be continued");
            }
            if (!job.paramsOf(0).isGreedy() && job.paramsOf(0).seed() == null) {
                throw ApiException.badRequest("request.seed", "a sampled request can be continued only with its "
                        + "seed: without it, the tokens after the cut would not be the ones it would have had");
            }
            if (req.headers().contains(HeaderNames.create(MIGRATION_HEADER)) && cluster == null) {
                // A cluster places a continuation only where there is room; one engine says so here.
                EngineLoad load = engine.load();
                int tokens = job.promptOf(0).length + generated.length;
                if (load.running() + load.waiting() >= load.maxRunning()
                        || load.freeKvPages() < (tokens + load.pageSize()) / load.pageSize()) {
                    throw ApiException.overloaded("no room for a continuation of " + tokens + " tokens here; retry later");
                }
            }
            var exchange = new GenerationExchange(generations, metrics, job, id, arrival).continueFrom(generated, Boolean.TRUE.equals(body.preempted()))
                    .withTokenIds();
            if (req.headers().contains(HeaderNames.create(MIGRATABLE_HEADER))) {
                exchange.migratable();
            }
            run(exchange, job, id, created, req, res);
        });
    }

    private static <T> T required(T value, String param) {
        if (value == null) {
            throw ApiException.badRequest(param, "`" + param + "` is required.");
        }
        return value;
    }

    private void run(GenerationExchange exchange, GenerationJob job, String id, long created, ServerRequest req,
                     ServerResponse res) throws Exception {
        inFlight.add(exchange); // before submitting, so a concurrent stop() can always cancel it
        ClientConnection connection = connections.of(req);
        try (AutoCloseable watch = connection == null ? () -> { } : connection.whenGone(exchange::clientGone)) {
            exchange.submit();
            var responses = new ResponseBuilder(job, id, created, tokenText);
            if (job.stream()) {
                SseStream sse = new SseStream(res);
                try (sse) {
                    exchange.stream(sse, responses);
                } catch (SseStream.ClientGone e) {
                    log.debug("{}: {}", id, e.getMessage());
                    if (!sse.started()) { // it left before its first frame (still queued, say)
                        SseStream.answerClientGone(res);
                    }
                }
            } else {
                Completion[] done = exchange.awaitAll();
                if (done == null) {
                    SseStream.answerClientGone(res);
                } else {
                    sendJson(res, Status.OK_200, responses.whole(done));
                }
            }
        } finally {
            inFlight.remove(exchange);
        }
    }

    private static String randomHex() {
        byte[] b = new byte[16];
        ThreadLocalRandom.current().nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    // ---- models, health, metrics ----------------------------------------------------------------

    private void models(ServerRequest req, ServerResponse res) {
        sendJson(res, Status.OK_200, new OpenAiJson.ModelList("list", modelCards()));
    }

    /** OpenAI's {@code GET /v1/models/{model}} (the SDKs' {@code models.retrieve}); ids may contain '/'. */
    private void model(ServerRequest req, ServerResponse res) {
        String id = java.net.URLDecoder.decode(req.path().rawPath().substring("/v1/models/".length()),
                StandardCharsets.UTF_8);
        ModelCard card = modelCards().stream().filter(c -> c.id().equals(id)).findFirst()
                .orElseThrow(() -> ApiException.modelNotFound(id));
        sendJson(res, Status.OK_200, card);
    }

    private List<ModelCard> modelCards() {
        String base = engine.baseModelName();
        List<ModelCard> cards = new ArrayList<>();
        cards.add(new ModelCard(base, "model", createdEpochSeconds, "punica", modelRoot != null ? modelRoot : base,
                null, engine.maxModelLen()));
        for (String name : engine.adapters().registered()) {
            String root = engine.adapters().directoryOf(name).map(Path::toString).orElse(name);
            cards.add(new ModelCard(name, "model", createdEpochSeconds, "punica", root, base, null));
        }
        return cards;
    }

    /** 200 while serving; 503 once stopping, so a load balancer drains this replica first. */
    private void health(ServerRequest req, ServerResponse res) {
        if (state == State.SERVING) {
            res.status(Status.OK_200).send();
        } else {
            sendError(res, ApiException.unavailable("The server is " + state.name().toLowerCase() + "."));
        }
    }

    private void metrics(ServerRequest req, ServerResponse res) throws IOException {
        var out = new ByteArrayOutputStream();
        metrics.write(out);
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, metrics.contentType());
        res.send(out.toByteArray());
    }

    // ---- bodies ---------------------------------------------------------------------------------

    /**
     * Reads the body up to the limit: a declared Content-Length over it is refused before reading; a
     * chunked body is read until it passes the limit. Either way the answer is 413 and the connection
     * is closed, since the rest of the body is not read.
     */
    private <T> T readBody(ServerRequest req, Class<T> type) throws IOException {
        return readBody(req, type, req.prologue().method().text() + " " + req.path().path());
    }

    /**
     * The body bound to its record. Fields this server does not know are ignored and logged once for
     * the request, as vLLM does.
     */
    private <T> T readBody(ServerRequest req, Class<T> type, String requestName) throws IOException {
        RequestBodies.Bound<T> bound = RequestBodies.read(readBytes(req), type);
        if (!bound.ignoredFields().isEmpty()) {
            log.info("{}: ignored fields this server does not use: {}", requestName,
                    String.join(", ", bound.ignoredFields()));
        }
        return bound.body();
    }

    private byte[] readBytes(ServerRequest req) throws IOException {
        OptionalLong declared = req.headers().contentLength();
        boolean refused = declared.isPresent() && declared.getAsLong() > maxBodyBytes;
        if (refused && declared.getAsLong() > DRAIN_LIMIT_BYTES) {
            throw ApiException.bodyTooLarge(maxBodyBytes);
        }
        byte[] body;
        try (InputStream in = req.content().inputStream()) {
            body = refused ? null : in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, maxBodyBytes + 1));
            if (refused || body.length > maxBodyBytes) {
                drain(in);
                throw ApiException.bodyTooLarge(maxBodyBytes);
            }
        } catch (RuntimeException e) {
            if (e instanceof ApiException api) {
                throw api;
            }
            throw ApiException.unreadableBody(e.getMessage());
        }
        return body;
    }

    /**
     * Reads and drops what is left of a refused body, up to {@link #DRAIN_LIMIT_BYTES} (within the request's read
     * timeout), before the 413 closes the connection: closing a socket with unread bytes resets it, and a client
     * still sending then loses the answer ("no response") instead of reading the 413.
     */
    private static void drain(InputStream in) {
        try {
            long left = DRAIN_LIMIT_BYTES;
            byte[] sink = new byte[16384];
            int n;
            while (left > 0 && (n = in.read(sink, 0, (int) Math.min(sink.length, left))) > 0) {
                left -= n;
            }
        } catch (IOException | RuntimeException e) {
            log.debug("draining a refused body: {}", e.toString()); // the connection closes after the 413 anyway
        }
    }

    private static void sendJson(ServerResponse res, Status status, Object body) {
        res.status(status);
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(OpenAiJson.bytes(body));
    }

    private static void sendText(ServerResponse res, String text) {
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "text/plain; charset=utf-8");
        res.send(text.getBytes(StandardCharsets.UTF_8));
    }

    private static void sendError(ServerResponse res, ApiException e) {
        if (res.isSent()) {
            return; // a stream already started; GenerationExchange reports errors in-band
        }
        res.status(Status.create(e.status()));
        if (e.retryable()) {
            res.header(HeaderNames.RETRY_AFTER, "1");
        }
        if (e.closesConnection()) {
            res.header(HeaderNames.CONNECTION, "close");
        }
        sendJson(res, res.status(), e.body());
    }

    // ---- builder --------------------------------------------------------------------------------

    public static final class Builder {
        private List<Engine> engines = List.of();
        private EngineCluster cluster;
        private String host = "127.0.0.1";
        private int port = 8000;
        private String apiKey;
        private final List<Path> adapterRoots = new ArrayList<>();
        private long maxBodyBytes = 8L << 20;
        private String modelRoot;
        private ConnectionLimits limits = ConnectionLimits.DEFAULTS;
        private int maxChoices = RequestParser.DEFAULT_MAX_CHOICES;
        private List<String> allowedOrigins = List.of("*");

        private Builder() {
        }

        public Builder engine(Engine engine) {
            this.engines = List.of(engine);
            this.cluster = null;
            return this;
        }

        /**
         * Several engines in this process behind one API, placed on by the cluster's policy; the engines'
         * metrics carry an {@code engine} label. The cluster and its engines belong to the caller.
         */
        public Builder cluster(EngineCluster cluster) {
            List<Engine> local = new ArrayList<>();
            for (var handle : cluster.engines()) {
                if (!(handle instanceof LocalEngineHandle l)) {
                    throw new IllegalArgumentException("engine " + handle.name() + " is not in this process");
                }
                local.add(l.engine());
            }
            this.engines = List.copyOf(local);
            this.cluster = cluster;
            return this;
        }

        public Builder runtime(EngineBuilder.Runtime runtime) {
            return engine(runtime.engine());
        }

        public Builder host(String host) {
            this.host = host;
            return this;
        }

        /** 0 picks a free port (tests); {@link #port()} tells which. */
        public Builder port(int port) {
            require(port >= 0 && port <= 65535, "port must be in [0, 65535], got " + port);
            this.port = port;
            return this;
        }

        /** When set, every /v1/ request needs {@code Authorization: Bearer <key>}. Null or blank: no key. */
        public Builder apiKey(String key) {
            this.apiKey = key == null || key.isBlank() ? null : key;
            return this;
        }

        /** Directories under which /v1/load_lora_adapter may load adapters; none disables it. */
        public Builder adapterRoots(List<Path> roots) {
            adapterRoots.addAll(roots);
            return this;
        }

        public Builder adapterRoot(Path root) {
            adapterRoots.add(root);
            return this;
        }

        public Builder maxBodyBytes(long bytes) {
            require(bytes >= 1, "max body size must be positive, got " + bytes);
            this.maxBodyBytes = bytes;
            return this;
        }

        /** What /v1/models shows as the base model's {@code root} (vLLM: the model path). */
        public Builder modelRoot(String root) {
            this.modelRoot = root;
            return this;
        }

        /** A request's headers and body must arrive within this time of its first byte (default 30 s). */
        public Builder requestReadTimeout(Duration timeout) {
            limits = new ConnectionLimits(timeout, limits.keepAliveTimeout(), limits.maxConnections());
            return this;
        }

        /** An idle keep-alive connection is closed after this (default 5 s, as vLLM). */
        public Builder keepAliveTimeout(Duration timeout) {
            limits = new ConnectionLimits(limits.requestReadTimeout(), timeout, limits.maxConnections());
            return this;
        }

        /** Open connections at most (default 10,000); further clients wait in the listen backlog. */
        public Builder maxConnections(int connections) {
            limits = new ConnectionLimits(limits.requestReadTimeout(), limits.keepAliveTimeout(), connections);
            return this;
        }

        /** Most completions one request may ask for (prompts × n; default 128). */
        public Builder maxChoices(int choices) {
            require(choices >= 1, "max choices must be at least 1, got " + choices);
            this.maxChoices = choices;
            return this;
        }

        /** Origins browsers may call the API from (CORS); {@code *} (the default, as vLLM) allows any, empty none. */
        public Builder allowedOrigins(List<String> origins) {
            this.allowedOrigins = List.copyOf(origins);
            return this;
        }

        public PunicaServer build() {
            return new PunicaServer(this);
        }

        private static void require(boolean valid, String problem) {
            if (!valid) {
                throw new IllegalArgumentException(problem);
            }
        }
    }
}
