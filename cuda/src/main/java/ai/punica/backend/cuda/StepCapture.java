package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.MemorySegment;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * What the step's host code is doing right now, for the parts that behave differently inside a step graph:
 * running eagerly, measuring the index arrays of a step before it is recorded, recording (launches are noted,
 * index arrays go to the graph's buffer, host uploads and allocations are refused), or replaying (launches are
 * only compared with the recording, index arrays are written at their recorded places). {@link StepGraphRecorder}
 * switches the mode; the allocator, the staging ring and the launcher ask it.
 */
final class StepCapture {
    enum Mode { EAGER, MEASURE, CAPTURE, REPLAY }

    /** Signals that a step cannot be recorded or replayed as it is; the step then runs eagerly. */
    static final class GraphMismatch extends RuntimeException {
        GraphMismatch(String message) {
            super(message, null, false, false);
        }
    }

    private Mode mode = Mode.EAGER;
    private StepGraph graph;
    /** Index arrays of the step being measured, recorded or replayed, by identity → device address. */
    private final Map<int[], Long> stepUploads = new IdentityHashMap<>();
    private int slotCursor;
    private int launchCursor;
    private long measuredBytes;

    boolean capturing() {
        return mode == Mode.CAPTURE;
    }

    boolean replaying() {
        return mode == Mode.REPLAY;
    }

    /** Recording or replaying: launches and index arrays belong to a graph. */
    boolean inGraph() {
        return mode == Mode.CAPTURE || mode == Mode.REPLAY;
    }

    /** Refuses work that a CUDA graph cannot hold (host uploads, allocation, synchronisation) while recording. */
    void requireNotCapturing(String what) {
        if (mode == Mode.CAPTURE) {
            throw new GraphMismatch(what + " inside a recorded step");
        }
    }

    /**
     * Notes a launch while recording (true: enqueue it), compares it with the recorded one on replay (false:
     * the graph holds it), or lets it through (true) otherwise.
     */
    boolean admit(LaunchRecord launch, String name) {
        if (mode == Mode.REPLAY) {
            List<LaunchRecord> recorded = graph.launches;
            int k = launchCursor++;
            if (k >= recorded.size() || !recorded.get(k).sameAs(launch)) {
                throw new GraphMismatch(name + " (launch " + k + ") differs from the recording: " + launch + " vs "
                        + (k < recorded.size() ? recorded.get(k) : "none"));
            }
            return false;
        }
        if (mode == Mode.CAPTURE) {
            graph.launches.add(launch);
        }
        return true;
    }

    /** While measuring, counts the bytes an index array will take in the graph's buffer (once per array). */
    void measure(int[] values) {
        if (mode == Mode.MEASURE && stepUploads.put(values, 0L) == null) {
            measuredBytes += Shapes.roundUp(Math.max(4L, values.length * 4L), 16);
        }
    }

    /** An index array in the current step graph's buffer: a new place while recording, the recorded one on replay. */
    long graphInts(int[] values) {
        Long known = stepUploads.get(values);
        if (known != null) {
            return known;
        }
        StepGraph g = graph;
        long bytes = Shapes.roundUp(Math.max(4L, values.length * 4L), 16);
        long offset;
        if (mode == Mode.CAPTURE) {
            offset = g.used;
            if (offset + bytes > g.capacity) {
                throw new GraphMismatch("the step's index arrays outgrew the " + g.capacity + " bytes measured");
            }
            g.slotOffsets.add(offset);
            g.slotLengths.add(values.length);
            g.used += bytes;
        } else {
            int k = slotCursor++;
            if (k >= g.slotLengths.size() || g.slotLengths.get(k) != values.length) {
                throw new GraphMismatch("index array " + k + " has " + values.length + " entries, recorded "
                        + (k < g.slotLengths.size() ? g.slotLengths.get(k) : "none"));
            }
            offset = g.slotOffsets.get(k);
        }
        MemorySegment.copy(values, 0, g.host, JAVA_INT, offset, values.length);
        stepUploads.put(values, g.device + offset);
        return g.device + offset;
    }

    void beginMeasure() {
        mode = Mode.MEASURE;
        measuredBytes = 0;
    }

    long measuredBytes() {
        return measuredBytes;
    }

    void beginCapture(StepGraph g) {
        mode = Mode.CAPTURE;
        graph = g;
    }

    void beginReplay(StepGraph g) {
        mode = Mode.REPLAY;
        graph = g;
        slotCursor = 0;
        launchCursor = 0;
    }

    /** After a replay's host code: it made exactly the recorded launches and uploads. */
    void requireWholeReplay() {
        if (launchCursor != graph.launches.size() || slotCursor != graph.slotLengths.size()) {
            throw new GraphMismatch("the step made " + launchCursor + " launches and " + slotCursor
                    + " uploads; the recording has " + graph.launches.size() + " and " + graph.slotLengths.size());
        }
    }

    /** Back to eager mode. */
    void end() {
        mode = Mode.EAGER;
        graph = null;
        stepUploads.clear();
    }
}
