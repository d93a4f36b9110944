package ai.punica.engine;

import ai.punica.kv.KvCacheManager;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.lora.AdapterManager;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.function.Predicate;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Continuous batching with mixed prefill and decode (Punica §3, G3 "decode first"). Each step, under a
 * token budget:
 * <ol>
 *   <li>every running sequence gets its next rows, oldest first: one row when decoding, a chunk of its
 *       prompt when still prefilling. When pages run out, the newest running sequence is offered to
 *       another engine (migration, Punica §5); if none takes it, it is preempted (pages freed, recomputed
 *       later from prompt + tokens so far);</li>
 *   <li>waiting sequences are admitted first come, first served, while budget, running slots and pages
 *       last; one whose adapter is still loading, or has no free slot, waits without blocking those
 *       behind it.</li>
 * </ol>
 * Adapter pressure (vLLM's {@code max_loras}): a step holds at most {@link AdapterManager#maxLoras()}
 * distinct adapters. A waiting request for an adapter not yet running is admitted only while there is room
 * under that cap and a free slot; requests for adapters already running go ahead of it, which keeps
 * batches large. So that a rarely used adapter is not passed over for ever, a request that has waited
 * longer than {@link ai.punica.lora.AdapterOptions#starvationLimit} and is still held back by adapter
 * pressure stops admission behind it: the running requests drain, an adapter leaves the batch, and it
 * runs next. The adapters of the first waiting requests are read into host memory ahead of their turn
 * ({@link AdapterManager#prefetch}).
 * Sequences are then ordered by adapter slot so that each adapter's rows form one SGMV segment; the
 * {@link ModelRunner} lays the rows out. Engine thread only.
 */
final class Scheduler {

    /** A waiting request that cannot be served, with the reason. */
    record Rejected(Sequence sequence, String message) {
    }

    private final EngineConfig config;
    private final KvCacheManager kv;
    private final AdapterManager adapters;
    private final Deque<Sequence> waiting = new ArrayDeque<>();
    /** Oldest first. */
    private final List<Sequence> running = new ArrayList<>();
    private final List<Rejected> rejected = new ArrayList<>();
    private final int watermarkPages;
    /** Offered the newest running request before it is preempted; true when it moved to another engine. */
    private final Predicate<Sequence> migrateOut;
    private final long starvationLimitNanos;
    /** Requests per adapter name among running and among waiting sequences (the lora_requests_info labels). */
    private final Map<String, Integer> runningPerAdapter = new HashMap<>();
    private final Map<String, Integer> waitingPerAdapter = new HashMap<>();
    /** Set when an adapter joins or leaves either map; cleared by {@link #takeAdapterSetsChanged()}. */
    private boolean adapterSetsChanged;
    private long preemptions;

    Scheduler(EngineConfig config, KvCacheManager kv, AdapterManager adapters,
              Predicate<Sequence> migrateOut) {
        this.config = config;
        this.kv = kv;
        this.adapters = adapters;
        this.migrateOut = migrateOut;
        this.watermarkPages = kv.numPages() / 100;
        this.starvationLimitNanos = adapters.options().starvationLimit().toNanos();
    }

    void add(Sequence s) {
        waiting.addLast(s);
        count(waitingPerAdapter, s, 1);
    }

    /** Queues {@code s} at the head, where a sequence preempted here waits. */
    void addFirst(Sequence s) {
        waiting.addFirst(s);
        count(waitingPerAdapter, s, 1);
    }

    /** Adapters of the running sequences, sorted. */
    Set<String> runningAdapters() {
        return new TreeSet<>(runningPerAdapter.keySet());
    }

    /** Adapters of the waiting sequences, sorted. */
    Set<String> waitingAdapters() {
        return new TreeSet<>(waitingPerAdapter.keySet());
    }

    /** Whether an adapter joined or left the running or waiting set since the last call; clears the flag. */
    boolean takeAdapterSetsChanged() {
        boolean changed = adapterSetsChanged;
        adapterSetsChanged = false;
        return changed;
    }

    private void count(Map<String, Integer> perAdapter, Sequence s, int delta) {
        if (s.adapter() == null) {
            return;
        }
        int n = perAdapter.getOrDefault(s.adapter(), 0) + delta;
        if (n < 0) {
            throw new IllegalStateException("adapter " + s.adapter() + " counted below zero");
        }
        if (n == 0) {
            perAdapter.remove(s.adapter());
            adapterSetsChanged = true;
        } else {
            if (n == delta) {
                adapterSetsChanged = true;
            }
            perAdapter.put(s.adapter(), n);
        }
    }

    int runningCount() {
        return running.size();
    }

    int waitingCount() {
        return waiting.size();
    }

    List<Sequence> running() {
        return running;
    }

    Deque<Sequence> waiting() {
        return waiting;
    }

    long preemptions() {
        return preemptions;
    }

    boolean hasWork() {
        return !running.isEmpty() || !waiting.isEmpty();
    }

    /** Requests found unservable during the last {@link #plan}; the caller reports and drops them. */
    List<Rejected> drainRejected() {
        List<Rejected> out = List.copyOf(rejected);
        rejected.clear();
        return out;
    }

    /** The next step, or null when nothing can run now. */
    StepPlan plan() {
        adapters.finishCopies();
        int budget = config.maxBatchTokens();
        List<Sequence> picked = new ArrayList<>();
        List<Integer> chunks = new ArrayList<>();

        // Logit rows (sampled rows, and prompt_logprobs' rows) fit the model's logit buffer of maxRunning rows:
        // every running sequence not yet planned keeps one.
        int logitRowsUsed = 0;

        // 1. Running sequences, oldest first; preempt the newest when pages run out.
        for (int i = 0; i < running.size() && budget > 0; i++) {
            Sequence s = running.get(i);
            int chunk = capForLogitRows(s, Math.min(s.pending(), budget),
                    config.maxRunning() - logitRowsUsed - (running.size() - 1 - i));
            if (chunk == 0) {
                continue; // its prompt_logprobs rows do not fit this step's logit rows
            }
            boolean preemptedSelf = false;
            while (!kv.grow(s.pages, s.computed + chunk)) {
                Sequence victim = running.getLast();
                if (migrateOut.test(victim)) {
                    remove(victim); // it goes on elsewhere
                } else {
                    preempt(victim);
                }
                if (victim == s) {
                    preemptedSelf = true;
                    break;
                }
            }
            if (preemptedSelf) {
                break;
            }
            picked.add(s);
            chunks.add(chunk);
            budget -= chunk;
            logitRowsUsed += logitRows(s, chunk);
        }

        // 2. Waiting sequences, first come first served, under the cap on distinct adapters.
        int maxLoras = adapters.maxLoras();
        long now = System.nanoTime();
        boolean holdBack = false;
        // Adapters not yet running that are being loaded for a waiting request count against the cap too:
        // otherwise every waiting request would start a load at once and the loads would evict each other.
        Set<String> loadingForAdmission = new HashSet<>();
        Iterator<Sequence> it = waiting.iterator();
        while (!holdBack && it.hasNext() && budget > 0 && running.size() < config.maxRunning()) {
            Sequence s = it.next();
            if (s.adapter() != null && !s.holdsSlot) {
                boolean newAdapter = !runningPerAdapter.containsKey(s.adapter())
                        && !loadingForAdmission.contains(s.adapter());
                // ... and under what the host tier can hold for them, or the loads evict each other there
                // (asked each time: each admission here may take another host copy into a slot).
                if (newAdapter && (runningPerAdapter.size() + loadingForAdmission.size() >= maxLoras
                        || loadingForAdmission.size() >= adapters.hostRoom())) {
                    holdBack = now - s.arrivalNanos > starvationLimitNanos;
                    continue; // no room for another adapter in the batch
                }
                Acquisition a = adapters.acquire(s.adapter());
                if (a instanceof Acquisition.Ready(int slot)) {
                    s.slot = slot;
                    s.holdsSlot = true;
                } else if (a instanceof Acquisition.Failed(String message)) {
                    it.remove();
                    count(waitingPerAdapter, s, -1);
                    rejected.add(new Rejected(s, message));
                    continue;
                } else if (a instanceof Acquisition.Loading) {
                    loadingForAdmission.add(s.adapter());
                    continue; // let others go ahead
                } else {
                    // Every slot pinned: let others go ahead, unless this one has waited too long.
                    holdBack = now - s.arrivalNanos > starvationLimitNanos;
                    continue;
                }
            }
            int chunk = capForLogitRows(s, Math.min(s.pending(), budget), config.maxRunning() - logitRowsUsed);
            if (chunk == 0) {
                releaseSlot(s);
                break; // its logit rows do not fit this step's: admit in arrival order
            }
            int reserve = running.isEmpty() ? 0 : watermarkPages;
            if (kv.additionalPagesFor(s.pages, s.computed + chunk) > kv.freePages() - reserve) {
                releaseSlot(s);
                break; // no pages: admit in arrival order, so stop here
            }
            kv.grow(s.pages, s.computed + chunk);
            it.remove();
            count(waitingPerAdapter, s, -1);
            s.status = Sequence.Status.RUNNING;
            running.add(s);
            count(runningPerAdapter, s, 1);
            picked.add(s);
            chunks.add(chunk);
            budget -= chunk;
            logitRowsUsed += logitRows(s, chunk);
        }
        prefetchWaitingAdapters(adapters.hostRoom());
        if (picked.isEmpty()) {
            return null;
        }
        return buildPlan(picked, chunks);
    }

    /** The logit rows a sequence's chunk needs: prompt_logprobs rows, and its sampled row at its last token. */
    private static int logitRows(Sequence s, int chunk) {
        return s.promptLogitRows(chunk) + (s.computed + chunk == s.length() ? 1 : 0);
    }

    /**
     * {@code chunk}, or less so that the sequence's {@link #logitRows} fit in {@code room}: a shorter chunk
     * stops before the prompt's last token, so it samples nothing (0 when not even that fits).
     */
    private static int capForLogitRows(Sequence s, int chunk, int room) {
        if (logitRows(s, chunk) <= room) {
            return chunk;
        }
        if (s.promptLogprobs == null) {
            return chunk - 1; // a prefill chunk one token short samples nothing
        }
        return Math.max(0, s.promptLogitPosition() + Math.max(0, room) - s.computed);
    }

    /** Starts host loads for the adapters of the first waiting requests, so admission finds them read. */
    private void prefetchWaitingAdapters(int hostRoom) {
        int left = adapters.prefetchDepth();
        Set<String> wanted = new HashSet<>();
        for (Iterator<Sequence> it = waiting.iterator(); left > 0 && it.hasNext(); left--) {
            Sequence s = it.next();
            if (s.adapter() != null && !s.holdsSlot && (wanted.contains(s.adapter()) || wanted.size() < hostRoom)) {
                wanted.add(s.adapter());
                adapters.prefetch(s.adapter());
            }
        }
    }

    /**
     * Orders the step: sequences sorted by adapter slot (stable), so that each adapter's rows form one SGMV
     * segment once {@link ModelRunner#layout} lays them out; a sequence samples when this step reaches
     * its last token; its prompt_logprobs rows come before its sampled row.
     */
    private StepPlan buildPlan(List<Sequence> picked, List<Integer> chunks) {
        Integer[] order = new Integer[picked.size()];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingInt(i -> picked.get(i).slot));
        List<StepPlan.Entry> entries = new ArrayList<>(order.length);
        int logitCount = 0;
        for (int i : order) {
            Sequence s = picked.get(i);
            int chunk = chunks.get(i);
            int promptRows = s.promptLogitRows(chunk);
            int promptLogitRow = promptRows > 0 ? logitCount : -1;
            logitCount += promptRows;
            int logitRow = s.computed + chunk == s.length() ? logitCount++ : -1;
            entries.add(new StepPlan.Entry(s, chunk, logitRow, promptLogitRow, promptRows, s.promptLogitPosition()));
        }
        return new StepPlan(entries);
    }

    /** Takes a running sequence off the device; it is recomputed from its tokens when readmitted. */
    private void preempt(Sequence s) {
        running.remove(s);
        count(runningPerAdapter, s, -1);
        kv.release(s.pages);
        s.computed = 0;
        releaseSlot(s);
        s.status = Sequence.Status.WAITING;
        s.preemptions++;
        preemptions++;
        waiting.addFirst(s);
        count(waitingPerAdapter, s, 1);
    }

    /** Drops a sequence wherever it is, returning its pages and adapter slot. */
    void remove(Sequence s) {
        if (running.remove(s)) {
            count(runningPerAdapter, s, -1);
        } else if (waiting.remove(s)) {
            count(waitingPerAdapter, s, -1);
        }
        kv.release(s.pages);
        releaseSlot(s);
        s.status = Sequence.Status.FINISHED;
    }

    private void releaseSlot(Sequence s) {
        if (s.holdsSlot) {
            adapters.release(s.slot);
            s.holdsSlot = false;
        }
        if (s.adapter() != null) {
            s.slot = -1;
        }
    }
}
