package ai.punica.cluster;

import ai.punica.engine.Completion;
import ai.punica.engine.Continuation;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineException;
import ai.punica.engine.EngineLoad;
import ai.punica.engine.FinishReason;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.InvalidRequestException;
import ai.punica.engine.PromptLogprob;
import ai.punica.engine.TokenDelta;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Punica's scheduler over engines (§5): places each new request on an engine by a {@link PlacementPolicy}
 * (consolidate by default), holds requests in a bounded FIFO queue while no engine has room, refuses them
 * beyond it (HTTP 429), and moves a request from an engine that runs out of KV pages to another engine with
 * room instead of letting it be preempted ({@link Continuation}).
 *
 * <pre>
 *  submit ──► queue (FIFO, bounded) ──► policy(states) ──► engine i ──tokens──► listener
 *                                                              │ out of KV pages: newest request
 *                                                              ▼
 *                                     policy(states of the others) ──► engine j resumes it ──► same listener
 * </pre>
 *
 * The running count a policy sees is the scheduler's own book of requests it placed and that have not
 * finished (exact, not a step behind); free KV pages and resident adapters come from each engine's latest
 * {@link EngineLoad}.
 */
public final class EngineCluster implements GenerationService, AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(EngineCluster.class);

    /** Why a request moved between engines (the {@code reason} label of the migration counter). */
    public enum MigrationReason {
        /** Its engine ran out of KV pages and would have preempted it. */
        KV_EXHAUSTED("kv_exhausted"),
        /** Its engine's batch fell below {@link Config#consolidateBelow}: it moved to a busier engine (active consolidation). */
        CONSOLIDATE("consolidate");

        public final String label;

        MigrationReason(String label) {
            this.label = label;
        }
    }

    /**
     * @param policy              how to place requests
     * @param queueCapacity       requests held while no engine has room; beyond it, new ones are refused (429)
     * @param idleAfter           an engine with nothing to do for this long is reported idle (to an autoscaler)
     * @param consolidateBelow    active consolidation: an engine with fewer requests than this (but some) hands
     *                            them to busier engines with room, so that it empties and can be released; 0 = off
     * @param consolidateInterval how often engines are looked at for consolidation
     */
    public record Config(PlacementPolicy policy, int queueCapacity, Duration idleAfter, int consolidateBelow,
                         Duration consolidateInterval) {
        public Config {
            if (queueCapacity < 0) {
                throw new IllegalArgumentException("queue capacity must not be negative, got " + queueCapacity);
            }
            if (idleAfter.isNegative()) {
                throw new IllegalArgumentException("idle time must not be negative, got " + idleAfter);
            }
            if (consolidateBelow < 0) {
                throw new IllegalArgumentException("the consolidation threshold must not be negative, got "
                        + consolidateBelow);
            }
            if (consolidateInterval.isNegative() || consolidateInterval.isZero()) {
                throw new IllegalArgumentException("the consolidation interval must be positive, got "
                        + consolidateInterval);
            }
        }

        /** Without active consolidation. */
        public Config(PlacementPolicy policy, int queueCapacity, Duration idleAfter) {
            this(policy, queueCapacity, idleAfter, 0, Duration.ofMillis(500));
        }

        public static Config defaults() {
            return new Config(new PlacementPolicy.Consolidate(), 1024, Duration.ofSeconds(60));
        }

        /** This configuration with active consolidation below {@code requests}, looked at every {@code interval}. */
        public Config consolidatingBelow(int requests, Duration interval) {
            return new Config(policy, queueCapacity, idleAfter, requests, interval);
        }
    }

    /** One engine in a {@link Snapshot}. */
    public record EngineView(String name, int requests, long placements, EngineLoad load, boolean available,
                             boolean idle) {
    }

    /** The scheduler's state for metrics and the state endpoint. */
    public record Snapshot(String policy, List<EngineView> engines, int queued, Map<MigrationReason, Long> migrations,
                           long queueRefusals) {
        public long busyEngines() {
            return engines.stream().filter(e -> e.requests() > 0).count();
        }

        public long idleEngines() {
            return engines.stream().filter(EngineView::idle).count();
        }
    }

    private final List<EngineHandle> engines;
    private final Config config;
    /** Requests this scheduler placed on each engine that have not finished. */
    private final AtomicIntegerArray onEngine;
    private final AtomicLongArray placements;
    private final Map<MigrationReason, AtomicLong> migrations = new EnumMap<>(MigrationReason.class);
    private final List<MigrationListener> migrationListeners = new CopyOnWriteArrayList<>();

    /** Told of each migration once the request runs on its new engine, on the source engine's thread: must not block. */
    public interface MigrationListener {
        void moved(int source, int target, Continuation continuation);
    }

    /** Adds a listener to every later migration (the console draws them between its engine lanes). */
    public void addMigrationListener(MigrationListener listener) {
        migrationListeners.add(listener);
    }
    private final AtomicLong queueRefusals = new AtomicLong();
    private final Map<String, Tracked> requests = new ConcurrentHashMap<>();
    /** Guards placement decisions, the queue and {@link #previous}: one decision at a time, on fresh books. */
    private final ReentrantLock lock = new ReentrantLock();
    private final ArrayDeque<Tracked> queue = new ArrayDeque<>();
    private final Semaphore wakeups = new Semaphore(0);
    private final Thread dispatcher;
    private int previous = -1;
    private volatile boolean closed;
    private final Thread consolidator;
    private static final PlacementPolicy CONSOLIDATION = new PlacementPolicy.Consolidate();

    public EngineCluster(List<? extends EngineHandle> engines, Config config) {
        if (engines.isEmpty()) {
            throw new IllegalArgumentException("a cluster needs at least one engine");
        }
        this.engines = List.copyOf(engines);
        this.config = config;
        this.onEngine = new AtomicIntegerArray(engines.size());
        this.placements = new AtomicLongArray(engines.size());
        for (MigrationReason r : MigrationReason.values()) {
            migrations.put(r, new AtomicLong());
        }
        for (int i = 0; i < this.engines.size(); i++) {
            if (this.engines.get(i) instanceof LocalEngineHandle local) {
                int source = i;
                local.engine().migrationHook((c, l) -> migrate(source, c, l, MigrationReason.KV_EXHAUSTED));
            }
        }
        this.dispatcher = Thread.ofPlatform().name("punica-cluster").daemon(true).unstarted(this::dispatchLoop);
        dispatcher.start();
        this.consolidator = config.consolidateBelow() == 0 ? null : Thread.ofPlatform().name("punica-consolidate")
                .daemon(true).start(this::consolidateLoop);
    }

    /** A cluster of engines in this process, named by their index. */
    public static EngineCluster local(List<Engine> engines, Config config) {
        List<LocalEngineHandle> handles = new ArrayList<>();
        for (int i = 0; i < engines.size(); i++) {
            handles.add(new LocalEngineHandle(Integer.toString(i), engines.get(i)));
        }
        return new EngineCluster(handles, config);
    }

    public List<EngineHandle> engines() {
        return engines;
    }

    public Config config() {
        return config;
    }

    /**
     * Places a request on an engine with room now, or queues it (FIFO) when none has room; refuses it with
     * an {@link EngineException} when it is invalid (as an engine would) or the queue is full (OVERLOADED:
     * HTTP 429 with Retry-After).
     */
    @Override
    public void submit(GenerationRequest request, GenerationListener listener) {
        if (!closed) {
            engines.getFirst().check(request);
        }
        Tracked t = track(request, listener);
        underLock(t, () -> {
            if (queue.isEmpty()) {
                int i = choose(new Placement(request.adapter(), request.promptTokens().length), -1);
                if (i >= 0) {
                    place(t, i, null, false);
                    return;
                }
            }
            if (queue.size() >= config.queueCapacity()) {
                queueRefusals.incrementAndGet();
                throw new EngineException(EngineException.Kind.OVERLOADED, null, "all " + engines.size()
                        + " engines are full and " + queue.size() + " requests are waiting; retry later");
            }
            queue.addLast(t);
        });
    }

    /**
     * Continues a request that began outside this process (fail-over from an engine that died) on the engine
     * the policy picks for prompt + generated tokens. Refused as OVERLOADED when no engine has room now: the
     * caller (a router) tries another server; except a request this process handed to its router on preemption
     * ({@code preempted}), which waits on the engine with the most free pages, as a preempted request does.
     */
    @Override
    public void resume(Continuation continuation, GenerationListener listener, boolean preempted) {
        Tracked t = track(continuation.request(), listener);
        underLock(t, () -> {
            int i = choose(new Placement(continuation.adapter(), continuation.totalTokens()), -1);
            if (i < 0 && preempted) {
                i = roomiest(); // it comes back from a router that found no room elsewhere: it waits, as if preempted
            }
            if (i < 0) {
                throw new EngineException(EngineException.Kind.OVERLOADED, null, "no engine has room for a "
                        + "continuation of " + continuation.totalTokens() + " tokens; retry later");
            }
            place(t, i, continuation, preempted);
        });
    }

    @Override
    public void cancel(String requestId) {
        Tracked t = requests.get(requestId);
        if (t == null) {
            return;
        }
        t.cancelled = true; // read by a migration after it moves the request: see migrate()
        lock.lock();
        try {
            if (queue.remove(t)) {
                t.abortQueued();
                return;
            }
        } finally {
            lock.unlock();
        }
        int owner = t.owner;
        if (owner >= 0) {
            engines.get(owner).cancel(requestId);
        }
    }

    /** The scheduler's state now: per engine, the queue, migrations. */
    public Snapshot snapshot() {
        long now = System.nanoTime();
        List<EngineView> views = new ArrayList<>();
        for (int i = 0; i < engines.size(); i++) {
            EngineHandle h = engines.get(i);
            EngineLoad load = h.load();
            int on = onEngine.get(i);
            boolean idle = on == 0 && load.idleSinceNanos() != 0
                    && now - load.idleSinceNanos() >= config.idleAfter().toNanos();
            views.add(new EngineView(h.name(), on, placements.get(i), load, h.available(), idle));
        }
        Map<MigrationReason, Long> moved = new EnumMap<>(MigrationReason.class);
        migrations.forEach((r, n) -> moved.put(r, n.get()));
        int queued;
        lock.lock();
        try {
            queued = queue.size();
        } finally {
            lock.unlock();
        }
        return new Snapshot(config.policy().name(), List.copyOf(views), queued, moved, queueRefusals.get());
    }

    /**
     * Moves a request off engine {@code source} (the engine's {@link ai.punica.engine.MigrationHook}, on its
     * thread): to the engine the policy picks among the others with room for prompt + generated tokens.
     * False when none has room, so the source preempts it locally.
     */
    boolean migrate(int source, Continuation c, GenerationListener listener, MigrationReason reason) {
        Tracked t = requests.get(c.requestId());
        if (t != listener || closed) {
            return false; // not one of ours (submitted to the engine directly)
        }
        int target;
        lock.lock();
        try {
            target = reason == MigrationReason.CONSOLIDATE ? busierWithRoom(c, source)
                    : choose(new Placement(c.adapter(), c.totalTokens()), source);
            if (target < 0) {
                return false;
            }
            t.owner = target;
            onEngine.decrementAndGet(source);
            onEngine.incrementAndGet(target);
            try {
                engines.get(target).resume(c, t);
            } catch (EngineException e) {
                t.owner = source;
                onEngine.incrementAndGet(source);
                onEngine.decrementAndGet(target);
                log.warn("engine {} refused the continuation of {}: {}", engines.get(target).name(), c.requestId(),
                        e.getMessage());
                return false;
            }
            previous = target;
            migrations.get(reason).incrementAndGet();
        } finally {
            lock.unlock();
        }
        log.debug("{} moved from engine {} to {} ({}, {} tokens to re-prefill)", c.requestId(),
                engines.get(source).name(), engines.get(target).name(), reason.label, c.totalTokens());
        if (t.cancelled) {
            engines.get(target).cancel(c.requestId()); // a cancel sent to the source may have missed it
        }
        for (MigrationListener l : migrationListeners) {
            l.moved(source, target, c);
        }
        return true;
    }

    // ---- placement (under lock) -----------------------------------------------------------------

    /**
     * Active consolidation's target for a request of engine {@code source}: by Punica's rule (the busiest engine
     * with room, ties to the adapter's engine, then the lowest index) among the others that hold at least as
     * many requests as the source (its request counted), so that requests only gather: after a move the target
     * holds more than the source, and no request can move back.
     */
    private int busierWithRoom(Continuation c, int source) {
        List<EngineState> states = new ArrayList<>(engines.size());
        int sourceCount = onEngine.get(source);
        for (int i = 0; i < engines.size(); i++) {
            EngineHandle h = engines.get(i);
            EngineLoad load = h.load();
            int on = onEngine.get(i);
            states.add(new EngineState(on, load.maxRunning(), load.freeKvPages(), load.pageSize(),
                    load.residentAdapters(), h.available() && i != source && on >= sourceCount));
        }
        return CONSOLIDATION.choose(states, new Placement(c.adapter(), c.totalTokens()), -1);
    }

    /** The policy's choice for {@code request}; engine {@code exclude} (a migration's source) counts as full. */
    private int choose(Placement request, int exclude) {
        List<EngineState> states = new ArrayList<>(engines.size());
        for (int i = 0; i < engines.size(); i++) {
            EngineHandle h = engines.get(i);
            EngineLoad load = h.load();
            states.add(new EngineState(onEngine.get(i), load.maxRunning(), load.freeKvPages(), load.pageSize(),
                    load.residentAdapters(), h.available() && i != exclude));
        }
        return config.policy().choose(states, request, previous);
    }

    /** The available engine with the most free KV pages, or -1 when none is available. */
    private int roomiest() {
        int chosen = -1;
        for (int i = 0; i < engines.size(); i++) {
            EngineHandle h = engines.get(i);
            if (h.available() && (chosen < 0 || h.load().freeKvPages() > engines.get(chosen).load().freeKvPages())) {
                chosen = i;
            }
        }
        return chosen;
    }

    /** Books a new request under its id; refused when closed or when the id is already running. */
    private Tracked track(GenerationRequest request, GenerationListener listener) {
        if (closed) {
            throw new EngineException(EngineException.Kind.UNAVAILABLE, null, "the server is shutting down");
        }
        Tracked t = new Tracked(request, listener);
        if (requests.putIfAbsent(request.id(), t) != null) {
            throw new InvalidRequestException("id", "a request with id " + request.id() + " is already running");
        }
        return t;
    }

    /** Places or queues the request {@link #track} just booked, under the lock; unbooks it when that throws. */
    private void underLock(Tracked t, Runnable placeOrQueue) {
        lock.lock();
        try {
            placeOrQueue.run();
        } catch (RuntimeException e) {
            requests.remove(t.request.id(), t);
            throw e;
        } finally {
            lock.unlock();
        }
    }

    /** Starts a request on an engine: submitted, or resumed from {@code continuation} when not null. */
    private void place(Tracked t, int engine, Continuation continuation, boolean preempted) {
        t.owner = engine;
        onEngine.incrementAndGet(engine);
        try {
            if (continuation == null) {
                engines.get(engine).submit(t.request, t);
            } else {
                engines.get(engine).resume(continuation, t, preempted);
            }
        } catch (RuntimeException e) {
            t.owner = -1;
            onEngine.decrementAndGet(engine);
            throw e;
        }
        placements.incrementAndGet(engine);
        previous = engine;
    }

    private void dispatchLoop() {
        while (!closed) {
            try {
                // Finishing requests wake us; KV pages freed by steps are seen at the next tick.
                wakeups.tryAcquire(5, TimeUnit.MILLISECONDS);
                wakeups.drainPermits();
            } catch (InterruptedException e) {
                return;
            }
            lock.lock();
            try {
                while (!queue.isEmpty()) {
                    Tracked t = queue.peekFirst();
                    int i = choose(new Placement(t.request.adapter(), t.request.promptTokens().length), -1);
                    if (i < 0) {
                        break;
                    }
                    queue.pollFirst();
                    try {
                        place(t, i, null, false);
                    } catch (EngineException e) {
                        requests.remove(t.request.id(), t);
                        t.client.onError(e);
                    }
                }
            } catch (RuntimeException e) {
                log.error("placing queued requests failed", e);
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * Active consolidation (Punica §5: idle GPUs can be released): every {@link Config#consolidateInterval}, each
     * engine that holds some requests but fewer than {@link Config#consolidateBelow} is asked to hand them over,
     * one by one on its thread ({@link Engine#handOver}); each goes to a busier engine with room
     * ({@link #busierWithRoom}), decided under the lock with fresh books, or stays where it is.
     */
    private void consolidateLoop() {
        while (!closed) {
            try {
                Thread.sleep(config.consolidateInterval());
            } catch (InterruptedException e) {
                return;
            }
            try {
                consolidateOnce();
            } catch (RuntimeException e) {
                log.error("consolidation failed", e);
            }
        }
    }

    private void consolidateOnce() {
        for (int i = 0; i < engines.size(); i++) {
            int on = onEngine.get(i);
            if (on == 0 || on >= config.consolidateBelow()
                    || !(engines.get(i) instanceof LocalEngineHandle local)) {
                continue;
            }
            int source = i;
            for (Tracked t : requests.values()) {
                if (t.owner != source || t.handingOver) {
                    continue;
                }
                t.handingOver = true;
                local.engine().handOver(t.request.id(), (c, l) -> migrate(source, c, l, MigrationReason.CONSOLIDATE))
                        .whenComplete((moved, error) -> t.handingOver = false);
            }
        }
    }

    /** Stops placing; requests still queued finish with ABORT. The engines belong to the caller. */
    @Override
    public void close() {
        closed = true;
        if (consolidator != null) {
            consolidator.interrupt();
        }
        dispatcher.interrupt();
        try {
            dispatcher.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        lock.lock();
        try {
            Tracked t;
            while ((t = queue.pollFirst()) != null) {
                t.abortQueued();
            }
        } finally {
            lock.unlock();
        }
    }

    /** A request this scheduler placed: its listener on the engines' side, forwarding to the client's. */
    private final class Tracked implements GenerationListener {
        final GenerationRequest request;
        final GenerationListener client;
        final long arrivalNanos = System.nanoTime();
        /** Index of the engine it is on; -1 while queued. */
        volatile int owner = -1;
        volatile boolean cancelled;
        /** A consolidation hand-over of it is queued on its engine. */
        volatile boolean handingOver;

        Tracked(GenerationRequest request, GenerationListener client) {
            this.request = request;
            this.client = client;
        }

        @Override
        public void onToken(TokenDelta delta) {
            client.onToken(delta);
        }

        @Override
        public void onFinish(Completion completion) {
            done();
            client.onFinish(completion);
        }

        @Override
        public void onError(EngineException error) {
            done();
            client.onError(error);
        }

        @Override
        public void onPromptLogprobs(List<PromptLogprob> promptLogprobs) {
            client.onPromptLogprobs(promptLogprobs);
        }

        @Override
        public boolean onPreempted(Continuation continuation) {
            if (client.onPreempted(continuation)) {
                done(); // its owner took it: it leaves this scheduler as it leaves the engine
                return true;
            }
            return false;
        }

        private void done() {
            if (requests.remove(request.id(), this)) {
                int o = owner;
                if (o >= 0) {
                    onEngine.decrementAndGet(o);
                }
                wakeups.release();
            }
        }

        void abortQueued() {
            requests.remove(request.id(), this);
            long now = System.nanoTime();
            client.onFinish(new Completion(request.id(), request.adapter(), FinishReason.ABORT, null, "", new int[0],
                    List.of(), request.promptTokens().length, arrivalNanos, 0, now, 0));
        }
    }
}
