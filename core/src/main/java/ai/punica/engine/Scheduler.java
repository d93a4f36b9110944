package ai.punica.engine;

import ai.punica.kv.KvCacheManager;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.lora.AdapterManager;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Deque;
import java.util.Iterator;
import java.util.List;
import java.util.function.Predicate;

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
    private long preemptions;

    Scheduler(EngineConfig config, KvCacheManager kv, AdapterManager adapters,
              Predicate<Sequence> migrateOut) {
        this.config = config;
        this.kv = kv;
        this.adapters = adapters;
        this.migrateOut = migrateOut;
        this.watermarkPages = kv.numPages() / 100;
    }

    void add(Sequence s) {
        waiting.addLast(s);
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
        int budget = config.maxBatchTokens();
        List<Sequence> picked = new ArrayList<>();
        List<Integer> chunks = new ArrayList<>();

        // 1. Running sequences, oldest first; preempt the newest when pages run out.
        for (int i = 0; i < running.size() && budget > 0; i++) {
            Sequence s = running.get(i);
            int chunk = Math.min(s.pending(), budget);
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
        }

        // 2. Waiting sequences, first come first served.
        Iterator<Sequence> it = waiting.iterator();
        while (it.hasNext() && budget > 0 && running.size() < config.maxRunning()) {
            Sequence s = it.next();
            if (s.adapter() != null && !s.holdsSlot) {
                Acquisition a = adapters.acquire(s.adapter());
                if (a instanceof Acquisition.Ready(int slot)) {
                    s.slot = slot;
                    s.holdsSlot = true;
                } else if (a instanceof Acquisition.Failed(String message)) {
                    it.remove();
                    rejected.add(new Rejected(s, message));
                    continue;
                } else {
                    continue; // loading, or every slot pinned: let others go ahead
                }
            }
            int chunk = Math.min(s.pending(), budget);
            int reserve = running.isEmpty() ? 0 : watermarkPages;
            if (kv.additionalPagesFor(s.pages, s.computed + chunk) > kv.freePages() - reserve) {
                releaseSlot(s);
                break; // no pages: admit in arrival order, so stop here
            }
            kv.grow(s.pages, s.computed + chunk);
            it.remove();
            s.status = Sequence.Status.RUNNING;
            running.add(s);
            picked.add(s);
            chunks.add(chunk);
            budget -= chunk;
        }
        if (picked.isEmpty()) {
            return null;
        }
        return buildPlan(picked, chunks);
    }

    /**
     * Orders the step: sequences sorted by adapter slot (stable), so that each adapter's rows form one SGMV
     * segment once {@link ModelRunner#layout} lays them out; a sequence samples when this step reaches
     * its last token.
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
            int logitRow = s.computed + chunk == s.length() ? logitCount++ : -1;
            entries.add(new StepPlan.Entry(s, chunk, logitRow));
        }
        return new StepPlan(entries);
    }

    /** Takes a running sequence off the device; it is recomputed from its tokens when readmitted. */
    private void preempt(Sequence s) {
        running.remove(s);
        kv.release(s.pages);
        s.computed = 0;
        releaseSlot(s);
        s.status = Sequence.Status.WAITING;
        s.preemptions++;
        preemptions++;
        waiting.addFirst(s);
    }

    /** Drops a sequence wherever it is, returning its pages and adapter slot. */
    void remove(Sequence s) {
        if (!running.remove(s)) {
            waiting.remove(s);
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
