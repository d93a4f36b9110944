package ai.punica.router;

import ai.punica.cluster.EngineState;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One {@code punica serve} process as the router sees it: its address, its load as last read from
 * {@code GET /v1/engine/state}, whether that read worked (the health probe), and the router's own count of the
 * requests it has running there.
 */
final class RemoteEngine {
    private static final Logger log = LoggerFactory.getLogger(RemoteEngine.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final URI base;
    private final String name;
    /** Requests the router has open on this engine (placement counts these, not a probe's stale number). */
    final AtomicInteger inFlight = new AtomicInteger();
    final AtomicLong placements = new AtomicLong();
    private volatile EngineState state;
    private volatile String problem = "not probed yet";

    RemoteEngine(URI base) {
        this.base = base;
        this.name = base.getHost() + ":" + base.getPort();
        this.state = new EngineState(0, 0, 0, 1, Set.of(), false);
    }

    URI base() {
        return base;
    }

    String name() {
        return name;
    }

    /** Why the engine is unavailable, or null when it is available. */
    String problem() {
        return problem;
    }

    boolean available() {
        return problem == null;
    }

    /** Its state for placement, with the router's own request count. */
    EngineState state() {
        EngineState s = state;
        return new EngineState(inFlight.get(), s.maxRunning(), s.freeKvPages(), s.pageSize(), s.residentAdapters(),
                problem == null);
    }

    /** Marks it down at once (a stream from it broke); the next probe may bring it back. */
    void markDown(String why) {
        if (problem == null) {
            log.warn("engine {} is down: {}", name, why);
        }
        problem = why;
    }

    /**
     * Reads {@code GET /v1/engine/state}: the engines of that process summed (running, max running), its
     * largest free KV pool (a request lands in one of them), the adapters resident in any.
     */
    void probe(HttpClient http, Duration timeout) {
        String why;
        try {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(base.resolve("/v1/engine/state"))
                    .timeout(timeout).GET().build(), HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) {
                why = "GET /v1/engine/state answered HTTP " + r.statusCode();
            } else {
                state = parse(r.body());
                if (problem != null) {
                    log.info("engine {} is up", name);
                }
                problem = null;
                return;
            }
        } catch (java.io.IOException e) {
            why = "unreachable: " + (e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
        } catch (IllegalArgumentException e) {
            why = "answered garbage to GET /v1/engine/state: " + e.getMessage();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        }
        markDown(why);
    }

    /** The state body, checked: anything else is refused with what was wrong. */
    static EngineState parse(String body) {
        JsonNode root;
        try {
            root = JSON.readTree(body);
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException("not JSON (" + abbreviate(body) + ")");
        }
        if (root == null || !root.path("object").asText().equals("engine.state") || !root.path("engines").isArray()
                || root.path("engines").isEmpty()) {
            throw new IllegalArgumentException("not an engine.state object with engines (" + abbreviate(body) + ")");
        }
        int maxRunning = 0;
        int freePages = 0;
        int pageSize = 0;
        Set<String> adapters = new HashSet<>();
        for (JsonNode e : root.path("engines")) {
            int max = e.path("max_running").asInt(-1);
            int free = e.path("free_kv_pages").asInt(-1);
            int page = e.path("page_size").asInt(-1);
            if (max < 1 || free < 0 || page < 1) {
                throw new IllegalArgumentException("an engine entry lacks max_running, free_kv_pages or page_size ("
                        + abbreviate(e.toString()) + ")");
            }
            maxRunning += max;
            if (free >= freePages) {
                freePages = free;
                pageSize = page;
            }
            e.path("resident_adapters").forEach(a -> adapters.add(a.asText()));
        }
        return new EngineState(0, maxRunning, freePages, pageSize, adapters, true);
    }

    private static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 80) + "...";
    }
}
