package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.Tensor;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The backend's device memory: blocks sized in multiples of {@value #BLOCK_ALIGN} bytes, freed blocks kept on
 * a free list per size and handed out again before the driver is asked, and the tensors and KV caches made
 * from them (a tensor or cache belongs to the allocator that made it; {@link #tensor} refuses others).
 *
 * <pre>
 *  alloc(bytes) ─► free list of roundUp(bytes, 256)? ─yes─► reuse (no cuMemAlloc)
 *                                                     └no─► cuMemAlloc ─(device full)─► free lists to the driver, again
 *  release(ptr) ─► free list of its size (no cuMemFree: that waits for the whole device)
 * </pre>
 */
final class DeviceAllocator {
    private static final Logger log = LoggerFactory.getLogger(DeviceAllocator.class);

    /** Device blocks are sized, and kept on the free lists, in multiples of this. */
    static final long BLOCK_ALIGN = 256;

    private final CudaContext ctx;
    /** Device blocks in use: address → size (a multiple of {@link #BLOCK_ALIGN}). */
    private final Map<Long, Long> liveAllocations = new HashMap<>();
    /**
     * Freed device blocks by size, taken again by {@link #alloc} before it asks the driver: adapters coming
     * and going reuse each other's memory with no cuMemFree (which waits for the whole device) or cuMemAlloc.
     */
    private final FreeBlocks<Long> freeBlocks = new FreeBlocks<>();
    private long driverAllocations;
    /** Tensors (and adapter blocks) freed so far: a slot table checked before the last free is checked again. */
    private long freedTensors;

    DeviceAllocator(CudaContext ctx) {
        this.ctx = ctx;
    }

    /**
     * A device block of at least {@code bytes}: a freed one of the same size if there is one, else a new
     * one; when the device is full, the free lists are given back to the driver and the allocation tried
     * again. Reuse needs no waiting: work on the compute stream is ordered after the work that used the
     * block before, and a copy on the copy stream first waits for the compute stream (see
     * {@link AsyncWeightLoads}).
     */
    long alloc(long bytes) {
        ctx.capture.requireNotCapturing("a device allocation");
        long size = Shapes.roundUp(Math.max(bytes, 1), BLOCK_ALIGN);
        Long p = freeBlocks.take(size);
        if (p == null) {
            try {
                p = ctx.driver.memAlloc(size);
            } catch (CudaException e) {
                if (freeBlocks.bytes() == 0) {
                    throw e;
                }
                log.info("device memory full: giving {} MiB of freed blocks back to the driver",
                        freeBlocks.bytes() >> 20);
                trimFreeBlocks();
                p = ctx.driver.memAlloc(size);
            }
            driverAllocations++;
        }
        liveAllocations.put(p, size);
        return p;
    }

    /** Puts a block on the free list of its size. */
    void release(long ptr) {
        Long size = liveAllocations.remove(ptr);
        if (size == null) {
            throw new IllegalStateException("0x" + Long.toHexString(ptr) + " is not a live allocation of this backend");
        }
        freeBlocks.put(size, ptr);
    }

    /** Puts a block on the free list of its size once the work enqueued so far is done (waits for the stream). */
    void releaseWhenIdle(long ptr) {
        ctx.synchronize();
        release(ptr);
    }

    /** Frees every block on the free lists (after the work that may still use them). */
    private void trimFreeBlocks() {
        ctx.synchronize();
        freeBlocks.drain(ctx.driver::memFree);
    }

    /** Frees every block, live or not (the backend's close, after the stream has drained). */
    void freeEverything() {
        for (Iterator<Long> it = liveAllocations.keySet().iterator(); it.hasNext(); ) {
            ctx.driver.memFree(it.next());
            it.remove();
        }
        trimFreeBlocks();
    }

    /** A new bf16 tensor of its own block. */
    CudaTensor newTensor(long rows, long cols) {
        return new CudaTensor(this, alloc(rows * cols * 2), (int) rows, (int) cols, DType.BF16, null);
    }

    /** A new float32 tensor of its own block (the logits: only the lm_head GEMM, downloads and sampling use it). */
    CudaTensor newF32Tensor(long rows, long cols) {
        return new CudaTensor(this, alloc(rows * cols * 4), (int) rows, (int) cols, DType.F32, null);
    }

    /** Frees a tensor that is not a view and not yet freed: its block goes to the free lists. */
    void free(CudaTensor t) {
        if (t.root != t) {
            throw new IllegalArgumentException(t + " is a view (firstRows); free the tensor it came from");
        }
        if (t.freed) {
            throw new IllegalStateException(t + " was already freed");
        }
        t.freed = true;
        freedTensors++;
        release(t.ptr);
    }

    /** How many tensors were freed so far: a cache of checks on tensors is good while this has not changed. */
    long freedTensors() {
        return freedTensors;
    }

    /** {@code t} as a tensor of this allocator that has not been freed; {@code what} names it in the error. */
    CudaTensor tensor(Tensor t, String what) {
        if (!(t instanceof CudaTensor c) || c.owner != this) {
            throw new IllegalArgumentException(what + " " + t + " was not made by this CUDA backend");
        }
        if (c.root.freed) {
            throw new IllegalStateException(what + " " + t + " was freed");
        }
        return c;
    }

    CudaKvStorage kv(KvStorage kv) {
        if (!(kv instanceof CudaKvStorage c) || c.owner() != this) {
            throw new IllegalArgumentException("KV storage " + kv + " was not made by this CUDA backend");
        }
        return c;
    }

    /**
     * @param freeBlockBytes    bytes of freed device blocks kept for reuse
     * @param reusedBlocks      allocations served from the free lists
     * @param driverAllocations allocations that went to cuMemAlloc
     */
    record Stats(long freeBlockBytes, long reusedBlocks, long driverAllocations) {
    }

    Stats stats() {
        return new Stats(freeBlocks.bytes(), freeBlocks.reused(), driverAllocations);
    }
}
