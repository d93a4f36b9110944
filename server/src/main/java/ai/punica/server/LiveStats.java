package ai.punica.server;

import ai.punica.engine.Engine;
import ai.punica.engine.EngineStats;
import ai.punica.engine.StepLog;
import com.fasterxml.jackson.annotation.JsonInclude;
import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The engine-statistics stream behind the console's live view: {@code GET /stats/stream}, Server-Sent
 * Events with one event per engine step (its adapter segments, prefill and decode rows, running and
 * waiting requests, KV pages), a summary per engine every second (adapter tiers, tokens per second)
 * and, when there are several engines, each migration between them. Every event names its engine, so
 * a view draws one lane per engine. The format is documented in docs/console.md.
 *
 * <p>Readers never touch the engine thread: steps come from each engine's {@link StepLog}, the rest
 * from its published {@link EngineStats}. A sampler thread keeps five minutes of per-second token
 * counts so that a view opened late still draws the throughput of the last minutes.
 */
public final class LiveStats implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(LiveStats.class);
    /** Seconds of throughput history kept per engine. */
    static final int HISTORY_SECONDS = 300;
    private static final long POLL_MILLIS = 100;
    private static final long SUMMARY_MILLIS = 1000;
    private static final int DEFAULT_BACKLOG = 256;
    private static final int MIGRATIONS_KEPT = 256;
    private static final byte[] END = "\n\n".getBytes(StandardCharsets.US_ASCII);

    /** One engine, under the name its events carry. */
    public record Lane(String name, Engine engine) {
    }

    // ---- the events, as they go on the wire (snake_case) ----------------------------------------

    record LaneInfo(String engine, String model, int kvPagesTotal, int kvPageSize, int adapterSlots,
                    int stepLogCapacity) {
    }

    record Hello(List<LaneInfo> engines, Map<String, List<long[]>> history, int historySeconds) {
    }

    record SegmentEvent(String adapter, int requests, int prefillRows, int decodeRows) {
    }

    record StepEvent(String engine, long step, long t, double durationMs, List<SegmentEvent> segments, int rows,
                     int sampled, int running, int waiting, int kvPagesUsed, int kvPagesTotal) {
    }

    record Tiers(List<String> device, List<String> loading, List<String> host, List<String> disk) {
    }

    record Summary(String engine, long t, int running, int waiting, int kvPagesUsed, int kvPagesTotal, long steps,
                   long promptTokens, long generationTokens, double tokensPerS, double promptTokensPerS,
                   long preemptions, int adapterSlots, Tiers adapters,
                   @JsonInclude(JsonInclude.Include.NON_DEFAULT) long droppedSteps) {
    }

    /** A request moved from one engine to another: drawn as an arrow between lanes. */
    record Migration(String engine, String from, String to, long t, String request, String adapter, int tokens) {
    }

    // ---- state ----------------------------------------------------------------------------------

    private final List<Lane> lanes;
    /** Per lane: {epoch second, generated tokens in it, prompt tokens in it}, oldest first. */
    private final List<ArrayDeque<long[]>> history = new ArrayList<>();
    private final long[] lastGeneration;
    private final long[] lastPrompt;
    private final ArrayDeque<Migration> migrations = new ArrayDeque<>();
    private long migrationCount;
    private volatile boolean closed;
    private Thread sampler;

    public LiveStats(List<Lane> lanes) {
        if (lanes.isEmpty()) {
            throw new IllegalArgumentException("live statistics need at least one engine");
        }
        this.lanes = List.copyOf(lanes);
        this.lastGeneration = new long[lanes.size()];
        this.lastPrompt = new long[lanes.size()];
        for (int i = 0; i < lanes.size(); i++) {
            history.add(new ArrayDeque<>());
            EngineStats s = lanes.get(i).engine().stats();
            lastGeneration[i] = s.generationTokens();
            lastPrompt[i] = s.promptTokens();
        }
    }

    List<Lane> lanes() {
        return lanes;
    }

    /** Starts the once-a-second throughput sampler. */
    synchronized void start() {
        if (sampler == null && !closed) {
            sampler = Thread.ofVirtual().name("punica-live-stats").start(this::sampleLoop);
        }
    }

    /** Ends the sampler and every open stream (each returns within one poll). */
    @Override
    public synchronized void close() {
        closed = true;
        if (sampler != null) {
            sampler.interrupt();
        }
    }

    /**
     * Records that a request left engine {@code from} for engine {@code to} (the cluster calls this when
     * it migrates a request); streams send it as a {@code migration} event.
     */
    public void migration(String from, String to, String requestId, String adapter, int tokens) {
        synchronized (migrations) {
            migrations.addLast(new Migration(from, from, to, System.currentTimeMillis(), requestId, adapter, tokens));
            migrationCount++;
            if (migrations.size() > MIGRATIONS_KEPT) {
                migrations.removeFirst();
            }
        }
    }

    private void sampleLoop() {
        while (!closed) {
            try {
                Thread.sleep(1000 - System.currentTimeMillis() % 1000);
            } catch (InterruptedException e) {
                return;
            }
            sample(System.currentTimeMillis() / 1000);
        }
    }

    private synchronized void sample(long epochSecond) {
        for (int i = 0; i < lanes.size(); i++) {
            EngineStats s = lanes.get(i).engine().stats();
            ArrayDeque<long[]> h = history.get(i);
            h.addLast(new long[] {epochSecond, s.generationTokens() - lastGeneration[i], s.promptTokens() - lastPrompt[i]});
            lastGeneration[i] = s.generationTokens();
            lastPrompt[i] = s.promptTokens();
            while (h.size() > HISTORY_SECONDS) {
                h.removeFirst();
            }
        }
    }

    private synchronized Hello hello() {
        List<LaneInfo> infos = new ArrayList<>();
        Map<String, List<long[]>> hist = new LinkedHashMap<>();
        for (int i = 0; i < lanes.size(); i++) {
            Lane lane = lanes.get(i);
            Engine e = lane.engine();
            infos.add(new LaneInfo(lane.name(), e.baseModelName(), e.stats().kvPagesTotal(), e.config().pageSize(),
                    e.adapters().slotCount(), e.stepLog().capacity()));
            hist.put(lane.name(), List.copyOf(history.get(i)));
        }
        return new Hello(infos, hist, HISTORY_SECONDS);
    }

    private synchronized double[] lastRates(int lane) {
        long[] last = history.get(lane).peekLast();
        return last == null ? new double[2] : new double[] {last[1], last[2]};
    }

    // ---- the stream -----------------------------------------------------------------------------

    /**
     * Serves one {@code GET /stats/stream}: a {@code hello} event, the last {@code backlog} steps of each
     * engine (query parameter, default 256) and the migrations kept (unless the backlog is 0), then new
     * steps and migrations as they happen, until the client leaves or the server stops.
     */
    void stream(ServerRequest req, ServerResponse res) {
        int backlog = backlog(req);
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        res.header(HeaderNames.CACHE_CONTROL, "no-cache");
        res.header("X-Accel-Buffering", "no");
        long[] positions = new long[lanes.size()];
        long[] dropped = new long[lanes.size()];
        for (int i = 0; i < lanes.size(); i++) {
            StepLog steps = lanes.get(i).engine().stepLog();
            positions[i] = Math.max(0, steps.position() - Math.min(backlog, steps.capacity()));
        }
        long migrationsSeen;
        synchronized (migrations) {
            // With a backlog, the kept migrations come too, so arrows between replayed steps can be drawn.
            migrationsSeen = backlog == 0 ? migrationCount : migrationCount - migrations.size();
        }
        try (OutputStream out = res.outputStream()) {
            event(out, "hello", hello());
            long nextSummary = 0;
            while (!closed) {
                for (int i = 0; i < lanes.size(); i++) {
                    StepLog.Batch batch = lanes.get(i).engine().stepLog().since(positions[i]);
                    positions[i] = batch.next();
                    dropped[i] += batch.dropped();
                    for (StepLog.StepRecord r : batch.records()) {
                        event(out, "step", stepEvent(lanes.get(i).name(), r));
                    }
                }
                migrationsSeen = sendMigrations(out, migrationsSeen);
                long now = System.currentTimeMillis();
                if (now >= nextSummary) {
                    for (int i = 0; i < lanes.size(); i++) {
                        event(out, "engine", summary(i, dropped[i]));
                    }
                    nextSummary = now + SUMMARY_MILLIS;
                }
                out.flush();
                Thread.sleep(POLL_MILLIS);
            }
        } catch (IOException | RuntimeException e) {
            // The client closed the connection (Helidon reports it unchecked): nothing to clean up, the
            // engine never waited for this reader.
            log.debug("stats stream ended: {}", e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static int backlog(ServerRequest req) {
        String raw = req.query().first("backlog").orElse(null);
        if (raw == null) {
            return DEFAULT_BACKLOG;
        }
        try {
            int n = Integer.parseInt(raw);
            if (n >= 0) {
                return n;
            }
        } catch (NumberFormatException e) {
            // falls through to the error below
        }
        throw ApiException.badRequest("backlog", "`backlog` must be a whole number of steps >= 0, got \"" + raw
                + "\".");
    }

    private long sendMigrations(OutputStream out, long seen) throws IOException {
        List<Migration> fresh = new ArrayList<>();
        long total;
        synchronized (migrations) {
            total = migrationCount;
            long first = migrationCount - migrations.size();
            long i = first;
            for (Migration m : migrations) {
                if (i++ >= seen) {
                    fresh.add(m);
                }
            }
        }
        for (Migration m : fresh) {
            event(out, "migration", m);
        }
        return total;
    }

    private static StepEvent stepEvent(String engine, StepLog.StepRecord r) {
        List<SegmentEvent> segments = new ArrayList<>(r.segments().size());
        for (StepLog.Segment s : r.segments()) {
            segments.add(new SegmentEvent(s.adapter(), s.requests(), s.prefillRows(), s.decodeRows()));
        }
        return new StepEvent(engine, r.step(), r.endEpochMillis(), r.durationNanos() / 1e6, segments, r.rows(),
                r.sampled(), r.running(), r.waiting(), r.kvPagesUsed(), r.kvPagesTotal());
    }

    private Summary summary(int lane, long droppedSteps) {
        Lane l = lanes.get(lane);
        EngineStats s = l.engine().stats();
        double[] rates = lastRates(lane);
        return new Summary(l.name(), System.currentTimeMillis(), s.running(), s.waiting(), s.kvPagesUsed(),
                s.kvPagesTotal(), s.steps(), s.promptTokens(), s.generationTokens(), rates[0], rates[1],
                s.preemptions(), s.loraSlots(), tiers(l.engine()), droppedSteps);
    }

    /** Each registered adapter in its highest tier: device slot, loading into one, host memory, or disk only. */
    static Tiers tiers(Engine engine) {
        StepLog.DeviceTier device = engine.stepLog().deviceTier();
        Set<String> placed = new TreeSet<>(device.resident());
        placed.addAll(device.copying());
        List<String> host = new ArrayList<>();
        for (String name : engine.adapters().hostCached()) {
            if (!placed.contains(name)) {
                host.add(name);
                placed.add(name);
            }
        }
        List<String> disk = new ArrayList<>();
        for (String name : engine.adapters().registered()) {
            if (!placed.contains(name)) {
                disk.add(name);
            }
        }
        return new Tiers(device.resident(), device.copying(), List.copyOf(new TreeSet<>(host)), disk);
    }

    private static void event(OutputStream out, String name, Object data) throws IOException {
        out.write(("event: " + name + "\ndata: ").getBytes(StandardCharsets.US_ASCII));
        out.write(OpenAiJson.bytes(data));
        out.write(END);
    }
}
