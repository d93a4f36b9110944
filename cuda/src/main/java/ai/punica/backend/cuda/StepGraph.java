package ai.punica.backend.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * One recorded step: the instantiated CUDA graph, the launches it was recorded from (a replay compares
 * against them), and the graph's own index-array buffer, pinned on the host and on the device, with the
 * place and length of every array the step uploads. {@link StepGraphRecorder} makes and frees it.
 */
final class StepGraph {
    final MemorySegment host;
    final long device;
    final long capacity;
    /** Recorded when the last replay's copy of {@link #host} was enqueued: the host buffer is free again after it. */
    final MemorySegment uploaded;
    long used;
    final List<Long> slotOffsets = new ArrayList<>();
    final List<Integer> slotLengths = new ArrayList<>();
    final List<LaunchRecord> launches = new ArrayList<>();
    MemorySegment exec;

    /** {@code host} and {@code device} of the same size: the capacity for index arrays. */
    StepGraph(MemorySegment host, long device, MemorySegment uploaded) {
        this.host = host;
        this.capacity = host.byteSize();
        this.device = device;
        this.uploaded = uploaded;
    }
}
