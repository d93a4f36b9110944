package ai.punica.parallel;

import ai.punica.backend.Backend;
import ai.punica.backend.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Collectives among ranks that are threads of one process (the CPU backend's tensor-parallel mode, so the
 * sharding math runs in CI). Each rank copies its tensor to the host, a barrier waits for all of them, then
 * each rank adds the contributions in rank order (so every rank gets bit-for-bit the same sum, and the
 * replicated residual stream stays identical across ranks) and copies the result back; a second barrier
 * keeps the next collective from overwriting contributions still being read. {@link #abort} opens the barriers
 * for good (every waiting or arriving rank throws) until {@link #recover}.
 */
public final class InMemoryCommunicator implements Communicator {

    /**
     * What the ranks of one group share: their contributions and a barrier that an abort opens. The check of
     * the abort flag and the wait are one step under the monitor, so a rank cannot start waiting on a barrier
     * just after the group was aborted and wait forever.
     */
    private static final class Shared {
        final float[][] contributions;
        private final int parties;
        private int arrived;
        private long generation;
        private boolean aborted;

        Shared(int size) {
            parties = size;
            contributions = new float[size][];
        }

        /** Returns once every rank has arrived; throws if the group is or gets aborted meanwhile. */
        synchronized void await(int rank) throws InterruptedException {
            if (aborted) {
                throw abortedError(rank);
            }
            long mine = generation;
            if (++arrived == parties) {
                arrived = 0;
                generation++;
                notifyAll();
                return;
            }
            while (generation == mine && !aborted) {
                wait();
            }
            if (generation == mine) {
                throw abortedError(rank);
            }
        }

        synchronized void abort() {
            aborted = true;
            notifyAll();
        }

        synchronized void recover() {
            aborted = false;
            arrived = 0;
            generation++;
        }

        private static IllegalStateException abortedError(int rank) {
            return new IllegalStateException("tensor-parallel rank " + rank
                    + ": another rank failed during this step's collective");
        }
    }

    private final Shared shared;
    private final int rank;
    private final Backend backend;
    private float[] host = new float[0];
    private float[] result = new float[0];

    private InMemoryCommunicator(Shared shared, int rank, Backend backend) {
        this.shared = shared;
        this.rank = rank;
        this.backend = backend;
    }

    /** One communicator per rank, rank i working on {@code backends.get(i)}'s tensors. */
    public static List<Communicator> group(List<? extends Backend> backends) {
        Shared shared = new Shared(backends.size());
        List<Communicator> out = new ArrayList<>();
        for (int i = 0; i < backends.size(); i++) {
            out.add(new InMemoryCommunicator(shared, i, backends.get(i)));
        }
        return List.copyOf(out);
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int size() {
        return shared.contributions.length;
    }

    @Override
    public void allReduceSum(Tensor t) {
        int n = t.rows() * t.cols();
        contribute(t, n);
        if (result.length != n) {
            result = new float[n];
        }
        float[] first = shared.contributions[0];
        System.arraycopy(first, 0, result, 0, n);
        for (int r = 1; r < shared.contributions.length; r++) {
            float[] c = shared.contributions[r];
            for (int i = 0; i < n; i++) {
                result[i] += c[i];
            }
        }
        await();
        backend.upload(result, t);
    }

    @Override
    public void allGather(Tensor local, Tensor out) {
        int n = local.rows() * local.cols();
        int size = size();
        if (out.rows() != size * local.rows() || out.cols() != local.cols()) {
            throw new IllegalArgumentException("allGather: out is " + out.rows() + "x" + out.cols() + ", expected "
                    + size * local.rows() + "x" + local.cols() + " for " + size + " ranks of " + local.rows() + "x"
                    + local.cols());
        }
        contribute(local, n);
        float[] gathered = new float[size * n];
        for (int r = 0; r < size; r++) {
            System.arraycopy(shared.contributions[r], 0, gathered, r * n, n);
        }
        await();
        backend.upload(gathered, out);
    }

    /** Publishes this rank's copy of {@code t} and waits until every rank has published. */
    private void contribute(Tensor t, int n) {
        if (host.length != n) {
            host = new float[n];
        }
        backend.download(t, host);
        shared.contributions[rank] = host;
        await();
    }

    private void await() {
        try {
            shared.await(rank);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("tensor-parallel rank " + rank + " was interrupted in a collective", e);
        }
    }

    @Override
    public void abort() {
        shared.abort();
    }

    @Override
    public void recover() {
        shared.recover();
    }

    @Override
    public void close() {
        // Nothing native to release.
    }
}
