package ai.punica.server;

import ai.punica.engine.Engine;
import ai.punica.lora.LoraAdapter;
import ai.punica.lora.LoraAdapterConfig;
import ai.punica.model.Projection;
import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.http.HttpRules;
import io.helidon.webserver.http.HttpService;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The web console (docs/console.md): its page at {@code /} and files under {@code /console/}, served
 * from the jar (no network, no build step), and the two endpoints it reads besides the OpenAI API:
 * {@code GET /stats/stream} (engine statistics as Server-Sent Events, open like {@code /metrics}) and
 * {@code GET /v1/adapters} (each adapter's rank, target modules, size and tier; behind the API key
 * like {@code /v1/models}).
 */
final class ConsoleRoutes implements HttpService, AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(ConsoleRoutes.class);
    static final String STATS_PATH = "/stats/stream";
    static final String ADAPTERS_PATH = "/v1/adapters";
    private static final String RESOURCES = "console/";
    /** File names the console ships: no directories, no dots but the extension's. */
    private static final Pattern FILE = Pattern.compile("[a-z0-9-]+\\.(html|css|js|svg|png|txt)");
    private static final Map<String, String> TYPES = Map.of(
            "html", "text/html; charset=utf-8", "css", "text/css; charset=utf-8",
            "js", "text/javascript; charset=utf-8", "svg", "image/svg+xml", "png", "image/png",
            "txt", "text/plain; charset=utf-8");
    /** Only the page's own files and its own origin: no inline script, nothing fetched from elsewhere. */
    private static final String CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            + " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

    private final LiveStats liveStats;

    ConsoleRoutes(LiveStats liveStats) {
        this.liveStats = liveStats;
    }

    LiveStats liveStats() {
        return liveStats;
    }

    @Override
    public void routing(HttpRules rules) {
        rules.get("/", (req, res) -> file(res, "index.html"))
                .get("/console/{file}", (req, res) -> file(res, req.path().pathParameters().get("file")))
                .get(STATS_PATH, (req, res) -> guarded(res, () -> liveStats.stream(req, res)))
                .get(ADAPTERS_PATH, (req, res) -> guarded(res, () -> sendJson(res, adapters())));
    }

    void start() {
        liveStats.start();
    }

    @Override
    public void close() {
        liveStats.close();
    }

    // ---- static files ---------------------------------------------------------------------------

    private static void file(ServerResponse res, String name) throws IOException {
        var m = FILE.matcher(name);
        byte[] bytes = null;
        if (m.matches()) {
            try (InputStream in = ConsoleRoutes.class.getClassLoader().getResourceAsStream(RESOURCES + name)) {
                bytes = in == null ? null : in.readAllBytes();
            }
        }
        if (bytes == null) {
            sendError(res, ApiException.notFound(null, "unknown_url", "The console has no file \"" + name + "\"."));
            return;
        }
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, TYPES.get(m.group(1)));
        // Files change with the jar, so browsers revalidate; the page is small.
        res.header(HeaderNames.CACHE_CONTROL, "no-cache");
        res.header("X-Content-Type-Options", "nosniff");
        res.header("Content-Security-Policy", CSP);
        res.header("Referrer-Policy", "no-referrer");
        res.send(bytes);
    }

    // ---- adapters -------------------------------------------------------------------------------

    /**
     * One registered adapter as the console's adapters page shows it.
     *
     * @param rank          the adapter's {@code r} (the largest, when {@code rank_pattern} varies it)
     * @param targetModules the projections it adapts (q_proj, …)
     * @param sizeBytes     adapter_model.safetensors on disk
     * @param tiers         per engine: device, loading, host or disk
     */
    record AdapterInfo(String name, int rank, double alpha, List<String> targetModules, long sizeBytes,
                       Map<String, String> tiers) {
    }

    record AdapterList(String object, String baseModel, List<AdapterInfo> data) {
    }

    private AdapterList adapters() {
        List<LiveStats.Lane> lanes = liveStats.lanes();
        Engine first = lanes.getFirst().engine();
        Map<String, Map<String, String>> tiers = new LinkedHashMap<>();
        for (LiveStats.Lane lane : lanes) {
            LiveStats.Tiers t = LiveStats.tiers(lane.engine());
            put(tiers, lane.name(), t.device(), "device");
            put(tiers, lane.name(), t.loading(), "loading");
            put(tiers, lane.name(), t.host(), "host");
            put(tiers, lane.name(), t.disk(), "disk");
        }
        List<AdapterInfo> out = new ArrayList<>();
        for (String name : first.adapters().registered()) {
            Optional<Path> dir = first.adapters().directoryOf(name);
            if (dir.isEmpty()) {
                continue; // unregistered since the listing
            }
            out.add(describe(name, dir.get(), tiers.getOrDefault(name, Map.of())));
        }
        return new AdapterList("list", first.baseModelName(), out);
    }

    private static void put(Map<String, Map<String, String>> tiers, String lane, List<String> names, String tier) {
        for (String n : names) {
            tiers.computeIfAbsent(n, k -> new LinkedHashMap<>()).put(lane, tier);
        }
    }

    /** Reads the adapter's config (small) and the size of its weights file; never the weights. */
    private static AdapterInfo describe(String name, Path dir, Map<String, String> tiers) {
        int rank = -1;
        double alpha = 0;
        List<String> targets = List.of();
        long size = -1;
        try {
            LoraAdapterConfig c = LoraAdapterConfig.load(dir.resolve(LoraAdapter.CONFIG_FILE));
            rank = c.rank();
            alpha = c.alpha();
            targets = modules(c.targets());
            size = Files.size(dir.resolve(LoraAdapter.WEIGHTS_FILE));
        } catch (IOException | RuntimeException e) {
            // Registered adapters were valid when registered; a file changed since is shown as unknown.
            log.warn("adapter {}: cannot read its files in {}: {}", name, dir, e.getMessage());
        }
        return new AdapterInfo(name, rank, alpha, targets, size, tiers);
    }

    private static List<String> modules(Set<Projection> targets) {
        List<String> out = new ArrayList<>();
        for (Projection p : Projection.values()) {
            if (targets.contains(p)) {
                out.add(p.moduleName());
            }
        }
        return out;
    }

    // ---- responses ------------------------------------------------------------------------------

    @FunctionalInterface
    private interface Action {
        void run() throws Exception;
    }

    private static void guarded(ServerResponse res, Action action) {
        try {
            action.run();
        } catch (ApiException e) {
            sendError(res, e);
        } catch (Exception e) {
            log.error("console request failed", e);
            sendError(res, ApiException.internal("Internal server error: " + e.getClass().getSimpleName()));
        }
    }

    private static void sendJson(ServerResponse res, Object body) {
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(OpenAiJson.bytes(body));
    }

    private static void sendError(ServerResponse res, ApiException e) {
        if (res.isSent()) {
            return;
        }
        res.status(Status.create(e.status()));
        res.header(HeaderNames.CONTENT_TYPE, "application/json");
        res.send(OpenAiJson.bytes(e.body()));
    }
}
