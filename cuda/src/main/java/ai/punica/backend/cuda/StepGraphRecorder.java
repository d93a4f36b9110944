package ai.punica.backend.cuda;

import ai.punica.backend.StepRecorder;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Step graphs: a step is run eagerly (measuring its index arrays), then captured into a CUDA graph whose
 * kernels read their index arrays from a buffer of the graph's own; a later step with the same key runs its
 * host code in replay mode, where every launch is compared with the recorded one (kernel, grid, arguments)
 * and every index array is written into the graph's pinned host buffer; one copy of that buffer and one
 * graph launch then do the whole step. The {@value #MAX_STEP_GRAPHS} most recently used keys keep a graph.
 *
 * <pre>
 *  first step of a key:  run eagerly (MEASURE) ─► capture (CAPTURE) ─► instantiate ─► kept under the key
 *  later steps:          host code (REPLAY) ─ ints(a) ─► graph host buffer ─(one H→D copy)─► graph device buffer
 *                                           ─ launch  ─► checked against the recording ─► cuGraphLaunch
 *                        (a difference: the step runs eagerly and is recorded again)
 * </pre>
 */
final class StepGraphRecorder implements StepRecorder {
    private static final Logger log = LoggerFactory.getLogger(StepGraphRecorder.class);

    /** Most step graphs kept; the least recently used one goes when a new one would exceed this. */
    private static final int MAX_STEP_GRAPHS = 64;
    private static final int MAX_RERECORDS = 3;

    private final CudaContext ctx;
    private final DeviceAllocator memory;
    private final KernelLauncher launcher;
    private long replayCount;
    private long recordCount;
    private final Set<Object> unrecordable = new HashSet<>();
    /** Keys whose replays failed since their last good one, with how often: a key that keeps failing stops being recorded. */
    private final Map<Object, Integer> rerecorded = new HashMap<>();
    private final LinkedHashMap<Object, StepGraph> graphs = new LinkedHashMap<>(16, 0.75f, true);

    StepGraphRecorder(CudaContext ctx, DeviceAllocator memory, KernelLauncher launcher) {
        this.ctx = ctx;
        this.memory = memory;
        this.launcher = launcher;
    }

    @Override
    public void run(Object key, Runnable step) {
        ctx.enter();
        StepGraph graph = graphs.get(key);
        if (graph != null) {
            if (replay(graph, step)) {
                replayCount++;
                rerecorded.remove(key);
                return;
            }
            graphs.remove(key);
            discard(graph);
            // A workspace that grew since the recording, say, is a one-off; a key that never replays is not.
            if (rerecorded.merge(key, 1, Integer::sum) > MAX_RERECORDS) {
                log.warn("steps of one shape keep differing from their CUDA graph; running them without one: {}", key);
                unrecordable.add(key);
            }
        }
        // Eagerly, measuring the index arrays a recording will need room for.
        ctx.capture.beginMeasure();
        try {
            step.run();
        } finally {
            ctx.capture.end();
        }
        if (unrecordable.contains(key)) {
            return;
        }
        if (graphs.size() >= MAX_STEP_GRAPHS) {
            Iterator<Map.Entry<Object, StepGraph>> eldest = graphs.entrySet().iterator();
            StepGraph old = eldest.next().getValue();
            eldest.remove();
            discard(old);
        }
        StepGraph recorded = record(step, Shapes.roundUp(ctx.capture.measuredBytes() + 256, 4096));
        if (recorded != null) {
            graphs.put(key, recorded);
            recordCount++;
        } else {
            unrecordable.add(key);
        }
    }

    @Override
    public void clear() {
        ctx.enter();
        if (!graphs.isEmpty()) {
            ctx.synchronize();
            graphs.values().forEach(this::close);
            graphs.clear();
        }
        unrecordable.clear();
        rerecorded.clear();
    }

    @Override
    public int recordings() {
        return graphs.size();
    }

    @Override
    public long replays() {
        return replayCount;
    }

    @Override
    public long records() {
        return recordCount;
    }

    /** Captures {@code step} (which does not execute); null when it cannot be recorded. */
    private StepGraph record(Runnable step, long capacity) {
        StepGraph g = new StepGraph(ctx.driver.memAllocHost(capacity), memory.alloc(capacity), ctx.driver.eventCreate());
        RuntimeException failure = null;
        MemorySegment graph = null;
        ctx.capture.beginCapture(g);
        ctx.driver.streamBeginCapture(ctx.stream);
        try {
            step.run();
        } catch (RuntimeException e) {
            failure = e;
        } finally {
            ctx.capture.end();
            try {
                graph = ctx.driver.streamEndCapture(ctx.stream);
            } catch (CudaException e) {
                if (failure == null) {
                    failure = e;
                }
            }
        }
        try {
            if (failure == null) {
                g.exec = ctx.driver.graphInstantiate(graph);
            }
        } catch (CudaException e) {
            failure = e;
        } finally {
            if (graph != null && graph.address() != 0) {
                ctx.driver.graphDestroy(graph);
            }
        }
        if (failure != null) {
            log.warn("a step of this shape will run without a CUDA graph: {}", failure.getMessage());
            close(g);
            return null;
        }
        return g;
    }

    /** Runs the step's host code in replay mode; true when it matched the recording and the graph was launched. */
    private boolean replay(StepGraph g, Runnable step) {
        ctx.driver.eventSynchronize(g.uploaded); // the last replay's copy has left the host buffer
        ctx.capture.beginReplay(g);
        try {
            step.run();
            ctx.capture.requireWholeReplay();
        } catch (StepCapture.GraphMismatch e) {
            log.info("step graph not replayed, recording it again: {}", e.getMessage());
            return false;
        } finally {
            ctx.capture.end();
        }
        ctx.driver.copyHtoDAsync(g.device, g.host, g.used, ctx.stream);
        ctx.driver.eventRecord(g.uploaded, ctx.stream);
        launcher.launchGraph(g.exec);
        return true;
    }

    private void discard(StepGraph g) {
        ctx.synchronize();
        close(g);
    }

    private void close(StepGraph g) {
        if (g.exec != null) {
            ctx.driver.graphExecDestroy(g.exec);
        }
        ctx.driver.eventDestroy(g.uploaded);
        ctx.driver.memFreeHost(g.host);
        memory.release(g.device);
    }

    /** Frees every graph (the backend's close, after the stream has drained). */
    void closeAll() {
        graphs.values().forEach(this::close);
        graphs.clear();
    }
}
