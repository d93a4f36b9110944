package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * Adapter weights copied on a second stream while the compute stream runs on ({@link WeightUploader} does
 * the copying): this class takes the device block, queues the job and tracks the uploads still open.
 */
final class AsyncWeightLoads {
    private final CudaContext ctx;
    private final DeviceAllocator memory;
    /** The copy stream and its thread, made on first use. */
    private WeightUploader uploader;
    private final Set<AsyncWeights> open = Collections.newSetFromMap(new IdentityHashMap<>());

    AsyncWeightLoads(CudaContext ctx, DeviceAllocator memory) {
        this.ctx = ctx;
        this.memory = memory;
    }

    /**
     * Copies the weights on a second stream while the compute stream runs on. All of them go into one
     * device block (each at a 256-byte boundary): an adapter takes one free-list entry, of the same size as
     * the next adapter of its shape, and travels in a few large transfers from {@link WeightUploader}'s
     * pinned staging buffers. This thread only takes the block and queues the copy; the upload thread
     * converts and copies. The tensors may be read once {@link WeightUpload#isDone()} (an event query,
     * never blocking) returns true.
     */
    WeightUpload load(List<TensorData> weights) {
        int n = weights.size();
        long[] offsets = new long[n];
        int[][] shapes = new int[n][];
        long bytes = 0;
        for (int i = 0; i < n; i++) {
            TensorData w = weights.get(i);
            shapes[i] = w.matrixShape("loadWeightsAsync");
            Shapes.checkShape(shapes[i][0], shapes[i][1]);
            if (w.data().byteSize() < w.elementCount() * w.dtype().byteSize()) {
                throw new IllegalArgumentException(w + " holds " + w.data().byteSize() + " bytes, fewer than its shape needs");
            }
            offsets[i] = bytes;
            bytes = Shapes.roundUp(bytes + w.elementCount() * 2, DeviceAllocator.BLOCK_ALIGN);
        }
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
        WeightUploader.Job job = new WeightUploader.Job(List.copyOf(weights), offsets, ptr, ready, done);
        AsyncWeights upload = new AsyncWeights(block, List.copyOf(tensors), job);
        open.add(upload);
        uploader.submit(job);
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
