package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightBlockLayout;
import ai.punica.backend.WeightUpload;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * Adapter weights copied on a second stream while the compute stream runs on ({@link WeightUploader} does
 * the copying): this class takes the device block, plans the copy, starts it and tracks the uploads still open.
 *
 * <p>Two paths. Weights in page-locked memory in the block's layout ({@link PinnedHostBlocks}; an adapter the
 * host tier read into it) are copied <em>directly</em>: {@link UploadPlan} finds the few contiguous runs (one for
 * such an adapter) and this thread enqueues them on the copy stream at once, after an event that orders the copy
 * behind the compute work that may still read the block; nothing converts or stages. Other weights (ordinary
 * memory, or not bf16) go through the upload thread, which converts them into pinned staging buffers.
 */
final class AsyncWeightLoads {
    private final CudaContext ctx;
    private final DeviceAllocator memory;
    private final PinnedHostBlocks pinned;
    private long directUploads;
    private long stagedUploads;
    /** The copy stream and its thread, made on first use. */
    private WeightUploader uploader;
    private final Set<AsyncWeights> open = Collections.newSetFromMap(new IdentityHashMap<>());

    AsyncWeightLoads(CudaContext ctx, DeviceAllocator memory, PinnedHostBlocks pinned) {
        this.ctx = ctx;
        this.memory = memory;
        this.pinned = pinned;
    }

    /** Uploads started so far: copied directly from pinned memory, and through the staging buffers (tests). */
    record Stats(long direct, long staged) {
    }

    Stats stats() {
        return new Stats(directUploads, stagedUploads);
    }

    /**
     * Copies the weights on a second stream while the compute stream runs on. All of them go into one
     * device block ({@link WeightBlockLayout}: bf16, each at a 256-byte boundary): an adapter takes one
     * free-list entry, of the same size as the next adapter of its shape. From pinned memory in that layout the
     * copies are enqueued here, directly; otherwise they travel in a few large transfers from
     * {@link WeightUploader}'s pinned staging buffers, converted and copied by the upload thread. The tensors
     * may be read once {@link WeightUpload#isDone()} (an event query, never blocking) returns true.
     */
    WeightUpload load(List<TensorData> weights) {
        int n = weights.size();
        int[][] shapes = new int[n][];
        for (int i = 0; i < n; i++) {
            TensorData w = weights.get(i);
            shapes[i] = w.matrixShape("loadWeightsAsync");
            Shapes.checkShape(shapes[i][0], shapes[i][1]);
            if (w.data().byteSize() < w.elementCount() * w.dtype().byteSize()) {
                throw new IllegalArgumentException(w + " holds " + w.data().byteSize() + " bytes, fewer than its shape needs");
            }
        }
        WeightBlockLayout layout = WeightBlockLayout.of(weights, DType.BF16, DeviceAllocator.BLOCK_ALIGN);
        long[] offsets = layout.offsets();
        long bytes = layout.bytes();
        UploadPlan direct = UploadPlan.direct(weights, offsets, pinned::contains);
        if (uploader == null) {
            uploader = new WeightUploader(ctx.driver, ctx.context);
        }
        long ptr = memory.alloc(bytes);
        long align = DeviceAllocator.BLOCK_ALIGN;
        CudaTensor block = new CudaTensor(memory, ptr, (int) Math.max(1, bytes / align), (int) align / 2, DType.BF16, null);
        List<Tensor> tensors = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            tensors.add(new CudaTensor(memory, ptr + offsets[i], shapes[i][0], shapes[i][1], DType.BF16, block));
        }
        MemorySegment ready = null;
        MemorySegment done = null;
        try {
            ready = ctx.driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
            done = ctx.driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
            // The copy stream starts after the compute work enqueued so far (which may still read the block).
            ctx.driver.eventRecord(ready, ctx.stream);
        } catch (RuntimeException e) {
            if (ready != null) {
                ctx.driver.eventDestroy(ready);
            }
            if (done != null) {
                ctx.driver.eventDestroy(done);
            }
            memory.release(ptr);
            throw e;
        }
        WeightUploader.Job job = new WeightUploader.Job(List.copyOf(weights), offsets, ptr, ready, done, direct);
        AsyncWeights upload = new AsyncWeights(block, List.copyOf(tensors), job);
        open.add(upload);
        if (direct != null) {
            directUploads++;
            uploader.copyDirect(job);
        } else {
            stagedUploads++;
            uploader.submit(job);
        }
        return upload;
    }

    /** Stops the upload thread and drops the events of the uploads still open (the backend's close). */
    void close() {
        if (uploader != null) {
            uploader.close();
        }
        for (AsyncWeights u : open) {
            u.destroyEvents();
        }
        open.clear();
    }

    /** An adapter's weights in one device block, filled on the copy stream. Engine thread only. */
    private final class AsyncWeights implements WeightUpload {
        private final CudaTensor block;
        private final List<Tensor> tensors;
        private final WeightUploader.Job job;
        private boolean done;
        private boolean closed;

        AsyncWeights(CudaTensor block, List<Tensor> tensors, WeightUploader.Job job) {
            this.block = block;
            this.tensors = tensors;
            this.job = job;
        }

        @Override
        public List<Tensor> tensors() {
            return tensors;
        }

        @Override
        public boolean isDone() {
            if (closed) {
                throw new IllegalStateException("this weight upload was closed");
            }
            if (done) {
                return true;
            }
            ctx.enter();
            if (job.finished.getCount() > 0) {
                return false;
            }
            if (job.failure != null) {
                throw new CudaException("copying " + job.weights.size() + " weights to the device failed: "
                        + job.failure.getMessage(), job.failure);
            }
            done = ctx.driver.eventQuery(job.done);
            return done;
        }

        /** The device block is a copy: once it is filled, the host weights may go. */
        @Override
        public boolean readsHostMemory() {
            return false;
        }

        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            if (ctx.closed()) {
                return; // the backend's close freed the block and the events
            }
            ctx.enter();
            if (!done) {
                uploader.cancel(job);
                // Copies already on the copy stream may still write the block: work enqueued on the compute
                // stream from now on (including whoever reuses the block) waits for them.
                if (job.recorded) {
                    ctx.driver.streamWaitEvent(ctx.stream, job.done);
                    if (job.plan != null) {
                        // A direct copy reads the adapter's host block until it ends: once this returns, the host
                        // tier may free or reuse that block.
                        ctx.driver.eventSynchronize(job.done);
                    }
                }
            }
            destroyEvents();
            open.remove(this);
            memory.free(block);
        }

        void destroyEvents() {
            ctx.driver.eventDestroy(job.ready);
            ctx.driver.eventDestroy(job.done);
        }
    }
}
