package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.PinnedHostMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Page-locked host memory for adapters' host copies ({@link PinnedHostMemory}): one block per adapter from
 * {@code cuMemAllocHost}, laid out as the adapter's device block (bf16, {@value DeviceAllocator#BLOCK_ALIGN}-byte
 * alignment), so that {@link AsyncWeightLoads} copies it with one {@code cuMemcpyHtoDAsync} at the copy engine's
 * speed instead of through the staging buffers.
 *
 * <p>Bounds: the blocks in use are the host tier's adapters, which count their block against the host tier's
 * byte budget ({@code hostAdapterBytes}; the tier goes over it only by the adapters slots hold). A block given back
 * is kept for the next adapter of its size ({@link #keeps}) as long as the page-locked bytes in all, held and kept,
 * stay within the most ever held at once: page-locked memory grows to the host tier's high-water mark and stays
 * there until the backend closes. Freeing it while serving is what this avoids: {@code cuMemFreeHost} waits for
 * the whole device (the decode steps of every request), and pinning 80 MB anew costs milliseconds; with 1,000
 * adapters over a 100-adapter host tier, a 1 GiB pool made distinct's TPOT 16% slower (19.80 against 17.10 ms,
 * docs/benchmarks/2026-12-03-s8-h200.md). When the driver refuses a block (page-locked memory is limited by the
 * OS), {@link #allocate} answers null and the adapter stays in ordinary memory: its upload goes through the
 * staging buffers.
 *
 * <p>Thread-safe: the loader's threads allocate, the engine thread looks blocks up ({@link #contains}), and any
 * thread that closes an adapter gives its block back. Each call makes the context current itself.
 */
final class PinnedHostBlocks implements PinnedHostMemory {
    private static final Logger log = LoggerFactory.getLogger(PinnedHostBlocks.class);
    private final CudaContext ctx;
    /** Blocks handed out: address → bytes. */
    private final TreeMap<Long, Long> live = new TreeMap<>();
    /** Given-back blocks by size, kept for reuse ({@link #keeps}). */
    private final FreeBlocks<MemorySegment> idle = new FreeBlocks<>();
    private long liveBytes;
    /** The most bytes held by adapters at once so far. */
    private long peakLiveBytes;
    private long driverAllocations;
    private long refused;
    private boolean closed;

    PinnedHostBlocks(CudaContext ctx) {
        this.ctx = ctx;
    }

    /**
     * Whether a block of {@code bytes} given back is kept for reuse rather than freed: when the page-locked total
     * ({@code liveBytes} still held, {@code idleBytes} kept, and this block) is within {@code peakLiveBytes}, the
     * most ever held at once. Blocks of a size no adapter asks for again stay kept too, within that bound.
     */
    static boolean keeps(long bytes, long liveBytes, long idleBytes, long peakLiveBytes) {
        return liveBytes + idleBytes + bytes <= peakLiveBytes;
    }

    @Override
    public DType dtype() {
        return DType.BF16;
    }

    @Override
    public long alignment() {
        return DeviceAllocator.BLOCK_ALIGN;
    }

    @Override
    public MemorySegment allocate(long bytes, Arena arena) {
        MemorySegment block = take(bytes);
        return block == null ? null : block.reinterpret(bytes, arena, s -> giveBack(block));
    }

    /** A block of {@code bytes}: a given-back one of that size, else a new one from the driver (outside the lock). */
    private MemorySegment take(long bytes) {
        synchronized (this) {
            if (closed || bytes <= 0) {
                return null;
            }
            MemorySegment block = idle.take(bytes);
            if (block != null) {
                return handOut(block, bytes);
            }
        }
        // Page-locking takes milliseconds: the engine thread's lookups (contains) must not wait for it.
        MemorySegment block;
        try {
            ctx.makeCurrent();
            block = ctx.driver.memAllocHost(bytes);
        } catch (RuntimeException e) {
            synchronized (this) {
                if (refused++ == 0) {
                    log.warn("no page-locked host memory for an adapter of {} bytes ({}); adapters that do not get "
                            + "any are kept in ordinary memory and copied through staging buffers (slower)", bytes,
                            e.getMessage());
                }
            }
            return null;
        }
        synchronized (this) {
            driverAllocations++;
            if (!closed) {
                return handOut(block, bytes);
            }
        }
        try { // the backend closed meanwhile (a virtual thread may be on another carrier by now: current again)
            ctx.makeCurrent();
            ctx.driver.memFreeHost(block);
        } catch (RuntimeException e) {
            log.debug("freeing a page-locked block after the backend closed: {}", e.getMessage());
        }
        return null;
    }

    private MemorySegment handOut(MemorySegment block, long bytes) {
        live.put(block.address(), bytes);
        liveBytes += bytes;
        peakLiveBytes = Math.max(peakLiveBytes, liveBytes);
        return block;
    }

    private void giveBack(MemorySegment block) {
        synchronized (this) {
            Long bytes = live.remove(block.address());
            if (bytes == null) {
                return;
            }
            liveBytes -= bytes;
            if (closed || ctx.closed()) {
                return; // the backend's close has released the context, and its page-locked memory with it
            }
            if (keeps(bytes, liveBytes, idle.bytes(), peakLiveBytes)) {
                idle.put(bytes, block);
                return;
            }
        }
        try {
            ctx.makeCurrent();
            ctx.driver.memFreeHost(block);
        } catch (RuntimeException e) {
            log.warn("freeing a page-locked adapter block failed: {}", e.getMessage());
        }
    }

    /** True when {@code [address, address + bytes)} lies inside one block handed out and not given back. */
    synchronized boolean contains(long address, long bytes) {
        Map.Entry<Long, Long> e = live.floorEntry(address);
        return e != null && bytes >= 0 && address + bytes <= e.getKey() + e.getValue();
    }

    @Override
    public synchronized Stats stats() {
        return new Stats(driverAllocations, idle.reused(), refused, liveBytes, idle.bytes());
    }

    /**
     * Frees the idle blocks and refuses from now on (the backend's close, before the context goes). Blocks still
     * held by adapters go with the context.
     */
    synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (idle.bytes() > 0) {
            ctx.makeCurrent();
        }
        idle.drain(ctx.driver::memFreeHost);
    }
}
