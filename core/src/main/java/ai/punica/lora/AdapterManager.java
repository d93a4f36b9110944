package ai.punica.lora;

import ai.punica.backend.Backend;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.PinnedHostMemory;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where adapters live, in three tiers (Punica §5, on-demand loading):
 * <ol>
 *   <li><b>registry</b>: name → directory; any thread may register or unregister. A name nobody registered
 *       is looked up in the {@link AdapterSource}s by {@link #resolve} (on-demand loading);</li>
 *   <li><b>host cache</b>: adapters read from disk (validated, copied into native memory), least recently
 *       used first out once over a byte budget; loads run on a loader executor, off the step loop, and are
 *       started ahead for waiting requests ({@link #prefetch});</li>
 *   <li><b>backend slots</b>: a fixed number of slots whose weights the SGMV kernels read; an adapter
 *       is copied into a slot when a request for it is admitted, and a slot is reused least recently
 *       used first, never while a running request pins it nor while its copy is under way.</li>
 * </ol>
 * Slots are touched only by the engine thread. A request whose adapter is still loading waits while
 * others run.
 *
 * <p>A slot fills in two stages. Admission starts {@link Backend#loadWeightsAsync}, which on a GPU copies
 * the weights on a copy stream while steps go on on the compute stream; the slot is then <em>copying</em>:
 * reserved for the adapter but invisible to the kernels (its {@link LoraWeights} entries stay empty) and
 * {@link #acquire} answers {@link Acquisition.Loading}. Each later {@code acquire} asks the upload, without
 * blocking, whether it has completed; once it has, the weights go into the {@link LoraWeights} tables and
 * the slot is ready. So no step ever waits for a copy, and no step reads a half-copied slot: the requests
 * of other adapters keep running, and the new request joins the first step after its copy ends. (The
 * alternative, letting the first step that reads the slot wait on the copy's event on the device, would
 * stall every request of that step for the whole copy.)
 */
public final class AdapterManager implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(AdapterManager.class);

    /** Outcome of {@link #acquire}: a slot, or why there is none yet. */
    public sealed interface Acquisition {
        /** The adapter is in {@code slot}, pinned until {@link #release}. */
        record Ready(int slot) implements Acquisition {
        }

        /** Being read from disk or copied to the backend; ask again on a later step. */
        record Loading() implements Acquisition {
        }

        /** Every slot is pinned by running requests; ask again when one finishes. */
        record NoFreeSlot() implements Acquisition {
        }

        /** The adapter cannot be served (unregistered, or its files failed to load). */
        record Failed(String message) implements Acquisition {
        }
    }

    private final LlamaModel model;
    private final ModelConfig baseConfig;
    private final Backend backend;
    private final long hostBudgetBytes;
    private final Executor loader;
    private final AdapterOptions options;

    private final Map<String, Path> registry = new ConcurrentHashMap<>();
    private final AdapterResolver resolver;
    private final List<AdapterLoadListener> listeners = new CopyOnWriteArrayList<>();
    // Host tier, guarded by `this`. Access order gives LRU iteration.
    private final LinkedHashMap<String, LoraAdapter> hostCache = new LinkedHashMap<>(16, 0.75f, true);
    private final Map<String, CompletableFuture<LoraAdapter>> loading = new ConcurrentHashMap<>();
    private final Map<String, String> failures = new ConcurrentHashMap<>();
    private long hostBytes;
    /** The largest adapter read into the host tier so far (guarded by {@code this}): sizes {@link #hostRoom}. */
    private long largestHostAdapter;
    /**
     * Adapters whose host copy a slot holds or is copying from (guarded by {@code this}). The host tier
     * never closes these: the upload thread, or the copy engine reading a pinned block directly, reads them
     * after {@link #acquire} returns, and the loader thread that trims the tier must not rely on seeing the
     * engine thread's slot arrays ({@code HostTierTrimRaceTest}).
     */
    private final Set<String> hostHeld = new HashSet<>();
    /** Bytes of the host copies in {@link #hostHeld} (guarded by {@code this}). */
    private long hostHeldBytes;

    // Slot tier, engine thread only.
    private final String[] slotAdapter;
    private final LoraAdapter[] slotHost;
    /** The weights of each occupied slot on the backend; copying until {@code slotReady}. */
    private final WeightUpload[] slotUpload;
    private final boolean[] slotReady;
    private final int[] slotPins;
    private final long[] slotLastUse;
    private final long[] slotCopyStart;
    private long useClock;

    private final AtomicLong loads = new AtomicLong();
    private final AtomicLong evictions = new AtomicLong();
    private final AtomicLong hostLoads = new AtomicLong();

    public AdapterManager(LlamaModel model, long hostBudgetBytes, Executor loader) {
        this(model, hostBudgetBytes, loader, AdapterOptions.defaults());
    }

    public AdapterManager(LlamaModel model, long hostBudgetBytes, Executor loader, AdapterOptions options) {
        this.model = model;
        this.baseConfig = model.config();
        this.backend = model.backend();
        this.hostBudgetBytes = hostBudgetBytes;
        this.loader = loader;
        this.options = options;
        this.resolver = new AdapterResolver(options, loader, registry::containsKey, this::installResolved);
        int slots = model.loraSlots();
        slotAdapter = new String[slots];
        slotHost = new LoraAdapter[slots];
        slotUpload = new WeightUpload[slots];
        slotReady = new boolean[slots];
        slotPins = new int[slots];
        slotLastUse = new long[slots];
        slotCopyStart = new long[slots];
    }

    // ---- registry (any thread) ------------------------------------------------------------------

    /**
     * Registers an adapter directory under {@code name} after checking it fully against the base model
     * (config, tensor names and shapes, rank limit), so that a bad adapter is refused here with a
     * message naming the file and tensor, never later in the step loop.
     *
     * @throws IllegalArgumentException if the name is taken or invalid
     * @throws ai.punica.model.ModelFormatException if the files do not form a valid adapter for this base
     */
    public void register(String name, Path directory) {
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException("adapter name must not be empty");
        }
        if (!Files.isDirectory(directory)) {
            throw new IllegalArgumentException("adapter directory " + directory + " does not exist");
        }
        checkRank(name, LoraAdapter.check(name, directory, baseConfig));
        if (registry.putIfAbsent(name, directory) != null) {
            throw new IllegalArgumentException("an adapter named '" + name + "' is already registered");
        }
        failures.remove(name);
        resolver.forgetMiss(name);
        log.debug("registered adapter {} from {}", name, directory);
    }

    private void checkRank(String name, int rank) {
        if (rank > model.maxLoraRank()) {
            throw new IllegalArgumentException("adapter " + name + " has rank " + rank
                    + ", above the largest rank this server accepts (" + model.maxLoraRank()
                    + "); restart with a larger --max-lora-rank");
        }
    }

    /**
     * Makes sure {@code name} is registered, looking it up in the sources when it is not (on-demand
     * loading; see {@link AdapterResolver}): on success the adapter is registered and already in host memory,
     * so the engine needs only the copy into a slot. Blocks the caller (an HTTP handler's virtual thread),
     * never the engine thread.
     *
     * @throws AdapterUnavailableException when no source has the name ({@link AdapterUnavailableException#missing})
     *     or its files failed to load; both answers are remembered for {@link AdapterOptions#missTtl}
     */
    public void resolve(String name) {
        resolver.resolve(name);
    }

    /**
     * Installs what a source found for {@code name}: disk → host, rank check, registration, host tier.
     * False when the name was registered meanwhile (through the load endpoint).
     */
    private boolean installResolved(String name, Path dir) {
        LoraAdapter adapter = readFromDisk(name, dir);
        try {
            checkRank(name, adapter.maxRank());
        } catch (RuntimeException e) {
            adapter.close();
            throw e;
        }
        if (registry.putIfAbsent(name, dir) != null) {
            adapter.close();
            return false;
        }
        failures.remove(name);
        cacheOnHost(name, adapter);
        return true;
    }

    /** Disk → host for one adapter, timed as {@link LoadStage#DISK}. */
    private LoraAdapter readFromDisk(String name, Path dir) {
        long start = System.nanoTime();
        // Into the backend's pinned memory where it has some (one copy per upload), else ordinary memory.
        LoraAdapter adapter = LoraAdapter.load(name, dir, baseConfig, backend.pinnedHostMemory().orElse(null));
        hostLoads.incrementAndGet();
        report(LoadStage.DISK, name, System.nanoTime() - start);
        return adapter;
    }

    private void report(LoadStage stage, String name, long nanos) {
        for (AdapterLoadListener l : listeners) {
            try {
                l.loaded(stage, name, nanos);
            } catch (RuntimeException e) {
                log.warn("adapter load listener failed", e);
            }
        }
    }

    /** Adds a listener told the time of every disk and device load stage (metrics). */
    public void addLoadListener(AdapterLoadListener listener) {
        listeners.add(listener);
    }

    public AdapterOptions options() {
        return options;
    }

    /** Most distinct adapters in one step: {@link AdapterOptions#maxLoras}, at most one per slot. */
    public int maxLoras() {
        return options.maxLoras() == 0 ? slotAdapter.length : Math.min(options.maxLoras(), slotAdapter.length);
    }

    /** How many waiting requests, oldest first, get their adapter prefetched into host memory. */
    public int prefetchDepth() {
        return options.prefetch() == 0 ? slotAdapter.length : options.prefetch();
    }

    /** Lookups the sources were asked for (one per cold name resolved or missed, not one per request). */
    public long sourceLookupCount() {
        return resolver.sourceLookups();
    }

    /** Adapters registered by on-demand resolution. */
    public long resolutionCount() {
        return resolver.resolutions();
    }

    /** Requests that waited on a resolution another request had started. */
    public long sharedResolutionCount() {
        return resolver.sharedResolutions();
    }

    /** Requests answered from the remembered misses, without a lookup. */
    public long rememberedMissCount() {
        return resolver.rememberedMisses();
    }

    /** Adapters read from disk into host memory (registered loads, prefetches and on-demand loads). */
    public long hostLoadCount() {
        return hostLoads.get();
    }

    /**
     * Starts reading a registered adapter into host memory if it is neither there nor on its way (a request
     * for it is waiting), so that its admission finds it ready. Any thread.
     */
    public void prefetch(String name) {
        if (registry.containsKey(name) && !failures.containsKey(name) && !loading.containsKey(name)
                && hostLookup(name) == null) {
            startHostLoad(name);
        }
    }

    /**
     * Removes an adapter from the registry: new requests for it are refused at once, running ones
     * finish; its slot and host memory are reclaimed once nothing pins them.
     */
    public boolean unregister(String name) {
        boolean removed = registry.remove(name) != null;
        if (removed) {
            log.info("unregistered adapter {}", name);
        }
        return removed;
    }

    public boolean isRegistered(String name) {
        return registry.containsKey(name);
    }

    public Set<String> registered() {
        return Collections.unmodifiableSet(new TreeSet<>(registry.keySet()));
    }

    public Optional<Path> directoryOf(String name) {
        return Optional.ofNullable(registry.get(name));
    }

    public long loadCount() {
        return loads.get();
    }

    public long evictionCount() {
        return evictions.get();
    }

    public int slotCount() {
        return slotAdapter.length;
    }

    // ---- slots (engine thread) ------------------------------------------------------------------

    /**
     * Gets {@code name} into a backend slot and pins it, or starts what is needed for that and says why
     * it is not there yet.
     */
    public Acquisition acquire(String name) {
        for (int s = 0; s < slotAdapter.length; s++) {
            if (name.equals(slotAdapter[s])) {
                if (!finishCopy(s)) {
                    String failure = failures.get(name);
                    return failure != null ? new Acquisition.Failed(failure) : new Acquisition.Loading();
                }
                pin(s);
                return new Acquisition.Ready(s);
            }
        }
        if (!registry.containsKey(name)) {
            return new Acquisition.Failed("adapter '" + name + "' is not registered");
        }
        String failure = failures.get(name);
        if (failure != null) {
            return new Acquisition.Failed(failure);
        }
        LoraAdapter host = hostLookup(name);
        if (host == null) {
            startHostLoad(name);
            return new Acquisition.Loading();
        }
        int victim = freeOrLeastRecentlyUsedSlot();
        if (victim < 0) {
            return new Acquisition.NoFreeSlot();
        }
        evictSlot(victim);
        synchronized (this) { // look up again and hold it: the loader may have trimmed it meanwhile
            host = hostCache.get(name);
            if (host != null) {
                hold(name, host);
            }
        }
        if (host == null) {
            startHostLoad(name);
            return new Acquisition.Loading();
        }
        failure = startCopy(victim, name, host);
        if (failure != null) {
            synchronized (this) {
                unhold(name);
            }
            return new Acquisition.Failed(failure);
        }
        synchronized (this) {
            trimHostCache(name);
        }
        if (!finishCopy(victim)) {
            failure = failures.get(name);
            return failure != null ? new Acquisition.Failed(failure) : new Acquisition.Loading();
        }
        pin(victim);
        return new Acquisition.Ready(victim);
    }

    /** Unpins a slot taken by {@link #acquire}. */
    public void release(int slot) {
        if (slotPins[slot] <= 0) {
            throw new IllegalStateException("slot " + slot + " released more often than acquired");
        }
        slotPins[slot]--;
        if (slotPins[slot] == 0 && slotAdapter[slot] != null && !registry.containsKey(slotAdapter[slot])) {
            evictSlot(slot); // unregistered while running: reclaim now
        }
    }

    /** Adapter names now in slots (copies complete), and how many running requests pin each. */
    public Map<String, Integer> residentAdapters() {
        Map<String, Integer> out = new LinkedHashMap<>();
        for (int s = 0; s < slotAdapter.length; s++) {
            if (slotAdapter[s] != null && slotReady[s]) {
                out.put(slotAdapter[s], slotPins[s]);
            }
        }
        return out;
    }

    /**
     * Makes every slot whose copy has completed ready (engine thread, once per step), so that a copy's device stage
     * ends when the copy does, not when a waiting request for it is next considered (at saturation only when a
     * running request finishes).
     */
    public void finishCopies() {
        for (int s = 0; s < slotAdapter.length; s++) {
            if (slotAdapter[s] != null && !slotReady[s]) {
                finishCopy(s);
            }
        }
    }

    /** The backend's page-locked memory for adapters' host copies, how it was had so far; empty without one. */
    public Optional<PinnedHostMemory.Stats> pinnedHostStats() {
        return backend.pinnedHostMemory().map(PinnedHostMemory::stats);
    }

    /** Adapter names whose copy into a slot is still under way. */
    public List<String> copyingAdapters() {
        List<String> out = new ArrayList<>();
        for (int s = 0; s < slotAdapter.length; s++) {
            if (slotAdapter[s] != null && !slotReady[s]) {
                out.add(slotAdapter[s]);
            }
        }
        return out;
    }

    /** Sum of pins over all slots (0 when no request holds an adapter). */
    public int pinnedSlots() {
        int n = 0;
        for (int pins : slotPins) {
            n += pins > 0 ? 1 : 0;
        }
        return n;
    }

    private void pin(int slot) {
        slotPins[slot]++;
        slotLastUse[slot] = ++useClock;
    }

    /** An empty slot, else the least recently used one that nothing pins and whose copy has ended; -1 if none. */
    private int freeOrLeastRecentlyUsedSlot() {
        int best = -1;
        for (int s = 0; s < slotAdapter.length; s++) {
            if (slotAdapter[s] == null) {
                return s;
            }
            if (!finishCopy(s)) {
                if (slotAdapter[s] == null) {
                    return s; // its copy failed and the slot was emptied
                }
                continue;
            }
            if (slotPins[s] == 0 && (best < 0 || slotLastUse[s] < slotLastUse[best])) {
                best = s;
            }
        }
        return best;
    }

    /**
     * Reserves {@code slot} for the adapter and starts copying its A and B matrices (layer by layer, in
     * {@link Projection} order) to the backend. Returns null, or why the copy could not start.
     */
    private String startCopy(int slot, String name, LoraAdapter adapter) {
        try {
            slotUpload[slot] = backend.loadWeightsAsync(adapter.weightsInSlotOrder());
        } catch (RuntimeException e) {
            String failure = "adapter '" + name + "' could not be put on the " + backend.name() + " backend: "
                    + e.getMessage();
            failures.put(name, failure);
            log.warn(failure, e);
            return failure;
        }
        slotAdapter[slot] = name;
        slotHost[slot] = adapter;
        slotReady[slot] = false;
        slotCopyStart[slot] = System.nanoTime();
        log.debug("adapter {} -> slot {} (copying)", name, slot);
        return null;
    }

    /**
     * True when {@code slot} is ready; makes a copying slot ready (its weights visible to the kernels) once
     * its upload has completed. A failed copy empties the slot and records the failure.
     */
    private boolean finishCopy(int slot) {
        if (slotReady[slot]) {
            return true;
        }
        String name = slotAdapter[slot];
        boolean done;
        try {
            done = slotUpload[slot].isDone();
        } catch (RuntimeException e) {
            String failure = "adapter '" + name + "' failed to copy to the " + backend.name() + " backend: "
                    + e.getMessage();
            failures.put(name, failure);
            log.warn(failure, e);
            evictSlot(slot);
            return false;
        }
        if (!done) {
            return false;
        }
        LoraAdapter adapter = slotHost[slot];
        List<Tensor> tensors = slotUpload[slot].tensors();
        int next = 0;
        for (int l = 0; l < baseConfig.numLayers(); l++) {
            for (Projection p : Projection.values()) {
                if (adapter.adapts(l, p)) {
                    LoraWeights w = model.loraWeights(l, p);
                    w.a()[slot] = tensors.get(next++);
                    w.b()[slot] = tensors.get(next++);
                    w.rank()[slot] = adapter.rank(l, p);
                    w.scale()[slot] = adapter.scale(l, p);
                }
            }
        }
        slotReady[slot] = true;
        if (!slotUpload[slot].readsHostMemory()) {
            synchronized (this) { // the slot has its own copy now: the host tier may trim this one
                unhold(name);
                trimHostCache(null);
            }
        }
        loads.incrementAndGet();
        report(LoadStage.DEVICE, name, System.nanoTime() - slotCopyStart[slot]);
        log.debug("adapter {} ready in slot {}", name, slot);
        return true;
    }

    private void evictSlot(int slot) {
        if (slotAdapter[slot] == null) {
            return;
        }
        for (int l = 0; l < baseConfig.numLayers(); l++) {
            for (Projection p : Projection.values()) {
                LoraWeights w = model.loraWeights(l, p);
                w.a()[slot] = null;
                w.b()[slot] = null;
                w.rank()[slot] = 0;
                w.scale()[slot] = 0f;
            }
        }
        slotUpload[slot].close(); // after the tables no longer name its tensors
        slotUpload[slot] = null;
        slotReady[slot] = false;
        String name = slotAdapter[slot];
        slotAdapter[slot] = null;
        slotHost[slot] = null;
        evictions.incrementAndGet();
        log.debug("adapter {} left slot {}", name, slot);
        synchronized (this) {
            unhold(name);
            if (!registry.containsKey(name)) {
                LoraAdapter host = hostCache.remove(name);
                if (host != null) {
                    hostBytes -= host.sizeBytes();
                    host.close();
                }
            }
        }
    }

    // ---- host tier ------------------------------------------------------------------------------

    private synchronized LoraAdapter hostLookup(String name) {
        return hostCache.get(name);
    }

    /**
     * Starts reading an adapter from disk on the loader, unless a read is already under way. The entry
     * in {@code loading} is removed by the task itself once the adapter is in the host cache (or has
     * failed), so a later eviction can start a fresh read.
     */
    private void startHostLoad(String name) {
        Path dir = registry.get(name);
        if (dir == null) {
            return;
        }
        CompletableFuture<LoraAdapter> task = new CompletableFuture<>();
        if (loading.putIfAbsent(name, task) != null) {
            return;
        }
        loader.execute(() -> {
            try {
                task.complete(cacheOnHost(name, readFromDisk(name, dir)));
            } catch (RuntimeException | Error e) {
                failures.put(name, "adapter '" + name + "' failed to load: " + e.getMessage());
                log.warn("adapter {} failed to load from {}: {}", name, dir, e.getMessage());
                task.completeExceptionally(e);
            } finally {
                loading.remove(name, task);
            }
        });
    }

    /**
     * Puts a freshly read adapter into the host tier and trims the tier to budget. A copy already there (an
     * adapter unregistered while a slot still held it, then resolved again) is kept, as a slot may read it.
     */
    private synchronized LoraAdapter cacheOnHost(String name, LoraAdapter adapter) {
        LoraAdapter cached = hostCache.get(name);
        if (cached != null) {
            adapter.close();
            return cached;
        }
        hostCache.put(name, adapter);
        hostBytes += adapter.sizeBytes();
        largestHostAdapter = Math.max(largestHostAdapter, adapter.sizeBytes());
        trimHostCache(name);
        return adapter;
    }

    /**
     * Drops least recently used host entries until under budget, never one in a slot (a slot may read
     * the host memory in place, as the CPU backend does) nor {@code keep} (just loaded, about to be
     * installed). Caller holds the lock.
     */
    private void trimHostCache(String keep) {
        if (hostBytes <= hostBudgetBytes) {
            return;
        }
        var it = hostCache.entrySet().iterator();
        while (hostBytes > hostBudgetBytes && it.hasNext()) {
            var e = it.next();
            if (hostHeld.contains(e.getKey()) || e.getKey().equals(keep)) {
                continue;
            }
            hostBytes -= e.getValue().sizeBytes();
            e.getValue().close();
            it.remove();
        }
    }

    /**
     * How many adapters waiting requests may want in host memory at once (being read, or read and not yet
     * in a slot) without the host tier evicting one of them before a slot takes it: the budget left by the
     * copies slots hold, over the largest adapter read so far; at least 1. The scheduler keeps its loads
     * and prefetches under it, so that a burst of cold adapters larger than the tier does not read each
     * adapter again and again (each read evicting the one that was read for the next admission).
     */
    public synchronized int hostRoom() {
        if (largestHostAdapter == 0) {
            return 1; // nothing read yet: one load tells the size
        }
        return (int) Math.clamp((hostBudgetBytes - hostHeldBytes) / largestHostAdapter, 1, Integer.MAX_VALUE);
    }

    /** Keeps the host tier from closing {@code name}'s copy while a slot reads it. Caller holds the lock. */
    private void hold(String name, LoraAdapter host) {
        if (hostHeld.add(name)) {
            hostHeldBytes += host.sizeBytes();
        }
    }

    /** Ends {@link #hold}; nothing if {@code name} is not held. Caller holds the lock. */
    private void unhold(String name) {
        if (hostHeld.remove(name)) {
            LoraAdapter host = hostCache.get(name);
            hostHeldBytes -= host == null ? 0 : host.sizeBytes();
        }
    }

    /** Names of the adapters held in host memory, least recently used first. */
    public synchronized List<String> hostCached() {
        return List.copyOf(hostCache.keySet());
    }

    /** Bytes of adapter weights held in host memory. */
    public synchronized long hostBytes() {
        return hostBytes;
    }

    /** True while any adapter is being read from disk. */
    public boolean anyLoading() {
        return !loading.isEmpty();
    }

    @Override
    public void close() {
        for (int s = 0; s < slotAdapter.length; s++) {
            slotPins[s] = 0;
            evictSlot(s);
        }
        synchronized (this) {
            for (LoraAdapter a : hostCache.values()) {
                a.close();
            }
            hostCache.clear();
            hostBytes = 0;
        }
    }
}
