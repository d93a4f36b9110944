package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.parallel.Communicator;
import ai.punica.parallel.TensorParallel;
import ai.punica.parallel.TensorParallelGroup;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One rank's NCCL communicator, over the GPU of its {@link CudaBackend}: the collectives are enqueued on
 * the backend's compute stream, in order with the rank's kernels, and return at once (nothing waits on the
 * host; the next kernel on the stream reads the reduced sum). All ranks of a process are made together by
 * {@code ncclCommInitAll}; each rank then calls its collectives from its own thread (the
 * {@code TensorParallelGroup}'s rank workers), so no {@code ncclGroupStart/End} is needed there.
 */
final class NcclCommunicator implements Communicator {
    private static final Logger log = LoggerFactory.getLogger(NcclCommunicator.class);
    /** {@code -Dpunica.nccl.timing=true}: time every all-reduce with CUDA events (the all-reduce share of a step). */
    private static final boolean TIMING = Boolean.getBoolean("punica.nccl.timing");
    /** Timed all-reduces whose events are read once this many are pending (they are long done by then). */
    private static final int TIMING_BACKLOG = 64;

    private final Nccl nccl;
    private final CudaBackend backend;
    private final MemorySegment comm;
    private final int rank;
    private final int size;
    private volatile boolean aborted;
    private boolean closed;
    /** With {@link #TIMING}: start and end events of all-reduces not yet read; totals of those read. */
    private final ArrayDeque<MemorySegment[]> pendingTimings = new ArrayDeque<>();
    private long timedCount;
    private double timedMillis;
    private long firstTimedNanos;

    private NcclCommunicator(Nccl nccl, CudaBackend backend, MemorySegment comm, int rank, int size) {
        this.nccl = nccl;
        this.backend = backend;
        this.comm = comm;
        this.rank = rank;
        this.size = size;
    }

    /** One communicator per backend (rank i on {@code backends.get(i)}'s GPU), through ncclCommInitAll. */
    static List<Communicator> group(List<Backend> backends) {
        List<CudaBackend> gpus = new ArrayList<>();
        for (Backend b : backends) {
            if (!(b instanceof CudaBackend cuda)) {
                throw new IllegalArgumentException("NCCL communicators need CUDA backends; rank " + gpus.size()
                        + " runs on " + b.name());
            }
            gpus.add(cuda);
        }
        Nccl nccl = Nccl.get();
        int n = gpus.size();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment comms = arena.allocate(ADDRESS, n);
            MemorySegment devices = arena.allocate(JAVA_INT, n);
            for (int i = 0; i < n; i++) {
                devices.setAtIndex(JAVA_INT, i, gpus.get(i).options().device());
            }
            nccl.check((int) nccl.commInitAll.invokeExact(comms, n, devices), "ncclCommInitAll over " + n + " GPUs");
            List<Communicator> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                out.add(new NcclCommunicator(nccl, gpus.get(i), comms.getAtIndex(ADDRESS, i), i, n));
            }
            return List.copyOf(out);
        } catch (CudaException | IllegalArgumentException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("ncclCommInitAll failed: " + t, t);
        }
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public void allReduceSum(Tensor t) {
        CudaTensor x = float32(t, "allReduceSum");
        CudaContext ctx = enter();
        long count = (long) x.rows() * x.cols();
        MemorySegment buf = MemorySegment.ofAddress(x.ptr);
        MemorySegment start = null;
        if (TIMING) {
            start = ctx.driver.eventCreate();
            ctx.driver.eventRecord(start, ctx.stream);
        }
        try {
            nccl.check((int) nccl.allReduce.invokeExact(buf, buf, count, Nccl.NCCL_FLOAT32, Nccl.NCCL_SUM, comm,
                    ctx.stream), "ncclAllReduce (rank " + rank + ", " + count + " floats)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw new CudaException("ncclAllReduce failed: " + e, e);
        }
        if (start != null) {
            MemorySegment end = ctx.driver.eventCreate();
            ctx.driver.eventRecord(end, ctx.stream);
            if (firstTimedNanos == 0) {
                firstTimedNanos = System.nanoTime();
            }
            pendingTimings.add(new MemorySegment[] {start, end});
            if (pendingTimings.size() > TIMING_BACKLOG) {
                readTimings(ctx, TIMING_BACKLOG / 2);
            }
        }
    }

    /** Adds the device time of the {@code n} oldest timed all-reduces to the totals (waits for them if needed). */
    private void readTimings(CudaContext ctx, int n) {
        for (int i = 0; i < n && !pendingTimings.isEmpty(); i++) {
            MemorySegment[] e = pendingTimings.poll();
            ctx.driver.eventSynchronize(e[1]);
            timedMillis += ctx.driver.eventElapsedMillis(e[0], e[1]);
            timedCount++;
            ctx.driver.eventDestroy(e[0]);
            ctx.driver.eventDestroy(e[1]);
        }
    }

    @Override
    public void allGather(Tensor local, Tensor out) {
        CudaTensor in = float32(local, "allGather");
        CudaTensor o = float32(out, "allGather");
        if (o.rows() != size * in.rows() || o.cols() != in.cols()) {
            throw new IllegalArgumentException("allGather: out is " + o.rows() + "x" + o.cols() + ", expected "
                    + size * in.rows() + "x" + in.cols());
        }
        CudaContext ctx = enter();
        long count = (long) in.rows() * in.cols();
        try {
            nccl.check((int) nccl.allGather.invokeExact(MemorySegment.ofAddress(in.ptr), MemorySegment.ofAddress(o.ptr),
                    count, Nccl.NCCL_FLOAT32, comm, ctx.stream), "ncclAllGather (rank " + rank + ")");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw new CudaException("ncclAllGather failed: " + e, e);
        }
    }

    private CudaContext enter() {
        if (aborted) {
            throw new IllegalStateException("NCCL rank " + rank + ": the group was aborted after a failed step; "
                    + "restart the server");
        }
        CudaContext ctx = backend.context();
        ctx.enter();
        return ctx;
    }

    private CudaTensor float32(Tensor t, String op) {
        if (!(t instanceof CudaTensor c)) {
            throw new IllegalArgumentException(op + ": " + t + " is not a tensor of this CUDA backend");
        }
        if (c.dtype() != DType.F32) {
            throw new IllegalArgumentException(op + ": " + t + " is " + c.dtype() + "; activations are float32");
        }
        return c;
    }

    /**
     * Aborts this rank's communicator (ncclCommAbort: kernels of a collective another rank will never join
     * are released); the group cannot be used again, so every later step fails with a message to restart.
     */
    @Override
    public void abort() {
        if (!aborted) {
            aborted = true;
            try {
                nccl.check((int) nccl.commAbort.invokeExact(comm), "ncclCommAbort");
            } catch (Throwable ignored) {
                // already failing; the step's own error is what the caller reports
            }
        }
    }

    @Override
    public void recover() {
        if (aborted) {
            throw new IllegalStateException("NCCL communicators cannot be reused after an abort; restart the server");
        }
    }

    @Override
    public void close() {
        if (closed || aborted) {
            return;
        }
        closed = true;
        if (TIMING && firstTimedNanos != 0) {
            CudaContext ctx = backend.context();
            ctx.enter();
            readTimings(ctx, pendingTimings.size());
            double wallMillis = (System.nanoTime() - firstTimedNanos) / 1e6;
            log.info("NCCL rank {}: {} all-reduces took {} ms of device time, {}% of the {} ms since the first",
                    rank, timedCount, String.format("%.1f", timedMillis),
                    String.format("%.1f", 100 * timedMillis / Math.max(wallMillis, 1e-9)),
                    String.format("%.0f", wallMillis));
        }
        try {
            nccl.check((int) nccl.commDestroy.invokeExact(comm), "ncclCommDestroy");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("ncclCommDestroy failed: " + t, t);
        }
    }

    /** Registers NCCL as the CUDA backend's tensor-parallel communicator (META-INF/services). */
    public static final class Provider implements TensorParallel.CommunicatorProvider {
        @Override
        public String backend() {
            return "cuda";
        }

        @Override
        public TensorParallelGroup.CommunicatorFactory factory() {
            return NcclCommunicator::group;
        }
    }
}
