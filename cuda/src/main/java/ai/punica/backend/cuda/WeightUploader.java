package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Weight copies that overlap compute: a second stream, one thread that feeds it, and two pinned staging
 * buffers. The engine thread only allocates the device block and queues a {@link Job}; the upload thread
 * converts the weights to bf16 into a staging buffer (reading the host copy, often memory-mapped, which may
 * fault pages in from disk) and copies each full buffer to the device, so that neither the reads nor the
 * copies hold up the steps on the compute stream.
 *
 * <pre>
 *  engine thread                        upload thread                       copy stream
 *  block = free list / cuMemAlloc
 *  record `ready` on compute stream     take job
 *  queue job ─────────────────────────► wait for `ready` ─────────────────► (after the compute work that
 *                                       convert tensors into staging[i]      used the block before)
 *                                       when full: HtoD staging[i] ───────► block[pos, pos + 8 MiB)
 *                                         record staged[i]; i ^= 1; wait
 *                                         for staged[i] before refilling it
 *                                       record `done` ────────────────────►
 *  isDone(): cuEventQuery(`done`)
 * </pre>
 *
 * A job whose weights already lie in pinned memory in the block's layout skips all of that: the engine
 * thread enqueues its few copies on the copy stream itself ({@link #copyDirect}), between the same two events.
 *
 * <p>Thread safety: the staging buffers and their events are used by the upload thread alone (after the
 * constructor, on the engine thread, made them). The copy stream takes work from both threads (direct copies
 * from the engine thread, staged ones from the upload thread): each job writes its own block and waits for its
 * own {@code ready}, so their order on the stream does not matter. The engine thread and the upload thread
 * share only the queue and each job's latch and volatile fields; the driver API itself is thread-safe, and
 * the upload thread makes the backend's context current once. Nothing of the backend's own state (free
 * lists, staging ring, kernel arguments) is touched here.
 */
final class WeightUploader implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(WeightUploader.class);
    static final long STAGING_BYTES = 8L << 20;
    private static final ValueLayout.OfShort SHORT_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * One adapter's weights to copy into {@code block}: weight i (converted to bf16) at byte offset
     * {@code offsets[i]}. {@code ready} is recorded on the compute stream, {@code done} on the copy stream.
     */
    static final class Job {
        final List<TensorData> weights;
        final long[] offsets;
        final long block;
        final MemorySegment ready;
        final MemorySegment done;
        /** The direct copies from pinned memory ({@link #copyDirect}), or null: the upload thread stages it. */
        final UploadPlan plan;
        /** Counted down once the upload thread no longer reads the host weights (done, failed or skipped). */
        final CountDownLatch finished = new CountDownLatch(1);
        volatile boolean cancelled;
        /** True once {@code done} was recorded: waiting on it is meaningful. */
        volatile boolean recorded;
        volatile Throwable failure;

        Job(List<TensorData> weights, long[] offsets, long block, MemorySegment ready, MemorySegment done,
            UploadPlan plan) {
            this.weights = weights;
            this.offsets = offsets;
            this.block = block;
            this.ready = ready;
            this.done = done;
            this.plan = plan;
        }
    }

    private static final Job STOP = new Job(List.of(), new long[0], 0, MemorySegment.NULL, MemorySegment.NULL, null);

    private final Driver driver;
    private final MemorySegment context;
    private final MemorySegment stream;
    private final MemorySegment[] staging = new MemorySegment[2];
    private final MemorySegment[] staged = new MemorySegment[2];
    private final BlockingQueue<Job> queue = new LinkedBlockingQueue<>();
    private final Thread thread;

    // Upload thread only: where the next bytes go.
    private int current;
    private long bufferStart;
    private int fill;
    private Job job;

    /** Makes the copy stream and staging buffers in {@code context} (current on the calling thread). */
    WeightUploader(Driver driver, MemorySegment context) {
        this.driver = driver;
        this.context = context;
        stream = driver.streamCreate(Driver.CU_STREAM_NON_BLOCKING);
        for (int i = 0; i < 2; i++) {
            staging[i] = driver.memAllocHost(STAGING_BYTES);
            staged[i] = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        }
        thread = Thread.ofPlatform().daemon().name("punica-cuda-upload").start(this::run);
    }

    /**
     * Enqueues a direct job's copies on the copy stream from the calling thread (the engine thread, which has the
     * context current): wait for {@code ready}, one {@code cuMemcpyHtoDAsync} per run of its plan, record
     * {@code done}. Never blocks; a failure is kept in the job for {@code isDone} to report.
     */
    void copyDirect(Job j) {
        try {
            driver.streamWaitEvent(stream, j.ready);
            for (UploadPlan.Run r : j.plan.runs()) {
                driver.copyHtoDAsync(j.block + r.deviceOffset(), MemorySegment.ofAddress(r.host()), r.bytes(), stream);
            }
        } catch (Throwable t) {
            j.failure = t;
        } finally {
            try {
                driver.eventRecord(j.done, stream); // also after a failure: copies enqueued before it still read the host block
                j.recorded = true;
            } catch (Throwable t) {
                if (j.failure == null) {
                    j.failure = t;
                }
            }
            j.finished.countDown();
        }
    }

    /** Queues a job; the upload thread starts on it after the ones before. */
    void submit(Job j) {
        queue.add(j);
    }

    /**
     * Stops a job: a queued one never starts, a running one stops at its next staging buffer. Returns once
     * the upload thread no longer reads the job's host weights; copies already on the copy stream may
     * still be running (see {@link Job#recorded}).
     */
    void cancel(Job j) {
        j.cancelled = true;
        if (queue.remove(j)) {
            j.finished.countDown();
            return;
        }
        try {
            j.finished.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CudaException("interrupted while stopping an adapter weight copy", e);
        }
    }

    private void run() {
        try {
            driver.setCurrent(context);
        } catch (RuntimeException e) {
            log.error("the weight upload thread cannot use the CUDA context; adapter copies will fail", e);
        }
        while (true) {
            Job j;
            try {
                j = queue.take();
            } catch (InterruptedException e) {
                return;
            }
            if (j == STOP) {
                return;
            }
            try {
                copy(j);
            } catch (Throwable t) {
                j.failure = t;
            } finally {
                try {
                    driver.eventRecord(j.done, stream);
                    j.recorded = true;
                } catch (Throwable t) {
                    if (j.failure == null) {
                        j.failure = t;
                    }
                }
                job = null;
                j.finished.countDown();
            }
        }
    }

    private void copy(Job j) {
        if (j.cancelled) {
            return;
        }
        job = j;
        // The block may have held tensors that compute work enqueued before this job still reads.
        driver.streamWaitEvent(stream, j.ready);
        bufferStart = 0;
        fill = 0;
        for (int i = 0; i < j.weights.size() && !j.cancelled; i++) {
            TensorData w = j.weights.get(i);
            seek(j.offsets[i]);
            long n = w.elementCount();
            long done = 0;
            while (done < n) {
                if (fill == STAGING_BYTES) {
                    flush();
                    if (j.cancelled) {
                        return;
                    }
                }
                long take = Math.min(n - done, (STAGING_BYTES - fill) / 2);
                toBf16(w, done, take, staging[current], fill);
                done += take;
                fill += (int) (2 * take);
            }
        }
        flush();
    }

    /** Moves to byte {@code offset} of the block: the gap (alignment padding) is staged as garbage. */
    private void seek(long offset) {
        if (offset - bufferStart >= STAGING_BYTES) {
            flush();
            bufferStart = offset;
        } else {
            fill = (int) (offset - bufferStart);
        }
    }

    /** Copies the filled part of the current buffer to the device and switches to the other buffer. */
    private void flush() {
        if (fill > 0) {
            driver.copyHtoDAsync(job.block + bufferStart, staging[current], fill, stream);
            driver.eventRecord(staged[current], stream);
            current ^= 1;
            driver.eventSynchronize(staged[current]); // its last copy must be over before it is refilled
        }
        bufferStart += fill;
        fill = 0;
    }

    /** Elements {@code [from, from + count)} of {@code w} as bf16 at byte {@code at} of {@code dst}. */
    private static void toBf16(TensorData w, long from, long count, MemorySegment dst, long at) {
        MemorySegment src = w.data();
        switch (w.dtype()) {
            case BF16 -> MemorySegment.copy(src, from * 2, dst, at, count * 2);
            case F32 -> {
                for (long e = 0; e < count; e++) {
                    dst.set(SHORT_LE, at + 2 * e, DType.floatToBf16(src.get(FLOAT_LE, (from + e) * 4)));
                }
            }
            case F16 -> {
                for (long e = 0; e < count; e++) {
                    float f = DType.f16ToFloat(src.get(SHORT_LE, (from + e) * 2));
                    dst.set(SHORT_LE, at + 2 * e, DType.floatToBf16(f));
                }
            }
        }
    }

    /** Stops the thread (abandoning queued jobs), waits for the copy stream and frees what it made. */
    @Override
    public void close() {
        Job j;
        while ((j = queue.poll()) != null) {
            j.cancelled = true;
            j.finished.countDown();
        }
        queue.add(STOP);
        try {
            thread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        driver.streamSynchronize(stream);
        for (int i = 0; i < 2; i++) {
            driver.eventDestroy(staged[i]);
            driver.memFreeHost(staging[i]);
        }
        driver.streamDestroy(stream);
    }
}
