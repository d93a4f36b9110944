package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.Arrays;

/**
 * Host data on its way to the device (and results on their way back): a pinned host buffer and a device
 * buffer of the same {@value #RING_BYTES} bytes, handed out front to back; when the ring is full the stream
 * is drained and it starts over. Per-step index arrays (token ids, positions, slot mappings, SGMV tiles,
 * attention tables) go through {@link #ints}, where an array equal to one uploaded recently in the same pass
 * of the ring is not uploaded again (the 32 layers of a step share one copy), and which, inside a step
 * graph, places the array in the graph's own buffer instead.
 *
 * <pre>
 *  int[] / float[] ─► host ring [off, off + n) ─(H→D on the compute stream)─► device ring [off, off + n) ─► kernels
 *  kernel output ─► device ring ─(D→H, then wait)─► host ring ─► Java arrays
 * </pre>
 */
final class StagingRing {
    static final long RING_BYTES = 64L << 20;

    private record IntUpload(int[] values, int epoch, long device) {
    }

    private final CudaContext ctx;
    private final StepCapture capture;
    private final MemorySegment host;
    private final long device;
    private long offset;
    private int epoch;
    private final ArrayDeque<IntUpload> recentUploads = new ArrayDeque<>();

    StagingRing(CudaContext ctx) {
        this.ctx = ctx;
        this.capture = ctx.capture;
        host = ctx.driver.memAllocHost(RING_BYTES);
        device = ctx.driver.memAlloc(RING_BYTES);
    }

    /** Reserves ring space (an offset into both buffers); when the ring is full, waits for the stream and starts over. */
    long reserve(long bytes) {
        capture.requireNotCapturing("a host upload");
        long aligned = Shapes.roundUp(bytes, 256);
        if (aligned > RING_BYTES) {
            throw new IllegalArgumentException(bytes + " bytes do not fit the " + RING_BYTES + "-byte staging ring");
        }
        if (offset + aligned > RING_BYTES) {
            ctx.synchronize();
            offset = 0;
            epoch++;
            recentUploads.clear();
        }
        long off = offset;
        offset += aligned;
        return off;
    }

    /** The pinned host side of the ring, to write at a {@link #reserve}d offset. */
    MemorySegment host() {
        return host;
    }

    /** The device address of ring offset {@code off}. */
    long device(long off) {
        return device + off;
    }

    /** Enqueues the copy of {@code bytes} from host ring offset {@code off} to device address {@code dst}. */
    void toDevice(long off, long dst, long bytes) {
        ctx.driver.copyHtoDAsync(dst, host.asSlice(off), bytes, ctx.stream);
    }

    /** Copies {@code bytes} at ring offset {@code off} from the device ring to the host ring and waits for them. */
    void toHost(long off, long bytes) {
        ctx.driver.copyDtoHAsync(host.asSlice(off), device + off, bytes, ctx.stream);
        ctx.synchronize();
    }

    /**
     * A device copy of {@code values}: shared with an equal array uploaded recently, or, while a step
     * graph is recorded or replayed, at this array's place in the graph's own buffer.
     */
    long ints(int[] values) {
        if (capture.inGraph()) {
            return capture.graphInts(values);
        }
        capture.measure(values);
        for (IntUpload u : recentUploads) {
            if (u.epoch == epoch && Arrays.equals(u.values, values)) {
                return u.device;
            }
        }
        long bytes = Math.max(4L, values.length * 4L);
        long off = reserve(bytes);
        MemorySegment.copy(values, 0, host, JAVA_INT, off, values.length);
        toDevice(off, device + off, bytes);
        if (values.length <= 1 << 16) {
            recentUploads.addFirst(new IntUpload(values.clone(), epoch, device + off));
            if (recentUploads.size() > 16) {
                recentUploads.removeLast();
            }
        }
        return device + off;
    }

    void close() {
        ctx.driver.memFree(device);
        ctx.driver.memFreeHost(host);
    }
}
