package ai.punica.backend;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Host memory that a backend copies to its device without staging: page-locked memory on a GPU, which the copy
 * engine reads directly. Adapters are read from disk into one such block each, laid out as the device block of a
 * slot ({@link WeightBlockLayout} with {@link #dtype} and {@link #alignment}), so that
 * {@link TensorMemory#loadWeightsAsync} of those weights is one large transfer. Thread-safe (the adapter loader
 * allocates, any thread frees by closing the arena).
 */
public interface PinnedHostMemory {

    /** The dtype the device keeps weights in; a block holds its weights converted to it. */
    DType dtype();

    /** Each weight in a block starts at a multiple of this many bytes. */
    long alignment();

    /**
     * {@code bytes} of pinned memory, given back when {@code arena} closes; null when none can be had now (the
     * driver refused), in which case the caller keeps the weights in ordinary memory and the copy goes through
     * staging buffers.
     */
    MemorySegment allocate(long bytes, Arena arena);

    /**
     * How blocks were had so far: from the driver (each one pins memory), reused after an adapter gave one back,
     * refused; and the bytes held by adapters and kept idle for reuse now.
     */
    record Stats(long driverAllocations, long reused, long refused, long liveBytes, long idleBytes) {
    }

    /** The counters so far ({@code /metrics}: punica:pinned_host_allocations_total, punica:pinned_host_reuses_total). */
    Stats stats();
}
