package ai.punica.engine;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * The engine's last steps, for live views: a fixed ring of immutable {@link StepRecord}s that the
 * engine thread fills after each step and any thread reads. Writing costs one small record and two
 * stores; the engine never waits for a reader, and a reader that falls more than the ring's length
 * behind loses the oldest records (it is told how many).
 *
 * <p>It also holds the latest snapshot of the device tier (which adapters sit in backend slots),
 * which only the engine thread may read from the adapter manager.
 */
public final class StepLog {

    /**
     * The rows of one SGMV segment: consecutive rows of the step that share an adapter.
     *
     * @param adapter     the adapter's name, or null for the base model (no LoRA add-on)
     * @param requests    sequences in the segment
     * @param prefillRows rows that feed prompt tokens (a prompt chunk, or a re-prefill after preemption)
     * @param decodeRows  rows that feed the one token sampled last step
     */
    public record Segment(String adapter, int requests, int prefillRows, int decodeRows) {
        public int rows() {
            return prefillRows + decodeRows;
        }
    }

    /**
     * One engine step.
     *
     * @param step             the engine's step counter (1 for its first step)
     * @param endEpochMillis   wall-clock time the step ended
     * @param durationNanos    forward, sampling and handing the tokens to their requests
     * @param segments         in row order, as the SGMV kernels see them
     * @param sampled          tokens sampled (rows that produced logits)
     * @param running          requests running after the step
     * @param waiting          requests waiting after the step
     * @param kvPagesUsed      KV pages held after the step
     * @param kvPagesTotal     the KV pool's size
     */
    public record StepRecord(long step, long endEpochMillis, long durationNanos, List<Segment> segments, int sampled,
                             int running, int waiting, int kvPagesUsed, int kvPagesTotal) {
        public int rows() {
            int n = 0;
            for (Segment s : segments) {
                n += s.rows();
            }
            return n;
        }
    }

    /**
     * Adapters in backend slots.
     *
     * @param resident adapters whose weights the kernels read now
     * @param copying  adapters whose copy into a slot is under way
     * @param slots    the number of slots
     */
    public record DeviceTier(List<String> resident, List<String> copying, int slots) {
    }

    /** Records read since a position, and how many were overwritten before they could be read. */
    public record Batch(List<StepRecord> records, long next, long dropped) {
    }

    /** A record and its position in the log, so a reader can tell a slot that was overwritten. */
    private record Slot(long position, StepRecord record) {
    }

    private final AtomicReferenceArray<Slot> ring;
    /** Records written so far; record n (0-based) sits at n % capacity. */
    private volatile long written;
    private volatile DeviceTier deviceTier;

    public StepLog(int capacity, int slots) {
        if (capacity < 1) {
            throw new IllegalArgumentException("step log capacity must be positive, got " + capacity);
        }
        this.ring = new AtomicReferenceArray<>(capacity);
        this.deviceTier = new DeviceTier(List.of(), List.of(), slots);
    }

    /**
     * The plan's segments in row order, read before the step runs (a sequence whose prompt is not yet
     * all computed is prefilling, as are the rows of a recompute after preemption). Engine thread only.
     */
    static List<Segment> segmentsOf(StepPlan plan) {
        List<Segment> out = new ArrayList<>(4);
        String adapter = null;
        int requests = 0;
        int prefill = 0;
        int decode = 0;
        for (StepPlan.Entry e : plan.entries()) {
            Sequence s = e.sequence();
            if (requests > 0 && !Objects.equals(adapter, s.adapter())) {
                out.add(new Segment(adapter, requests, prefill, decode));
                requests = prefill = decode = 0;
            }
            adapter = s.adapter();
            requests++;
            if (e.chunk() > 1 || s.computed < s.promptLength()) {
                prefill += e.chunk();
            } else {
                decode += e.chunk();
            }
        }
        if (requests > 0) {
            out.add(new Segment(adapter, requests, prefill, decode));
        }
        return List.copyOf(out);
    }

    /** Sequences of the plan that sample a token this step. */
    static int sampledOf(StepPlan plan) {
        int n = 0;
        for (StepPlan.Entry e : plan.entries()) {
            n += e.logitRow() >= 0 ? 1 : 0;
        }
        return n;
    }

    /** Engine thread only. */
    void append(StepRecord record) {
        long n = written;
        ring.lazySet((int) (n % ring.length()), new Slot(n, record));
        written = n + 1; // the volatile write publishes the slot written before it
    }

    /** Engine thread only. */
    void deviceTier(DeviceTier tier) {
        this.deviceTier = tier;
    }

    public DeviceTier deviceTier() {
        return deviceTier;
    }

    /** Position after the newest record: pass it to {@link #since} to read only what comes next. */
    public long position() {
        return written;
    }

    public int capacity() {
        return ring.length();
    }

    /**
     * The records from position {@code from} on, oldest first. A record overwritten while it was read is
     * counted as dropped, never returned in the wrong place: each slot carries its position.
     */
    public Batch since(long from) {
        long end = written;
        long start = Math.max(from, end - ring.length());
        long dropped = start - from;
        List<StepRecord> out = new ArrayList<>((int) Math.max(0, end - start));
        for (long i = start; i < end; i++) {
            Slot slot = ring.get((int) (i % ring.length()));
            if (slot == null || slot.position() != i) {
                dropped++; // overwritten by a newer step while we read
                continue;
            }
            out.add(slot.record());
        }
        return new Batch(out, end, Math.max(0, dropped));
    }
}
