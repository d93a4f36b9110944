package ai.punica.backend.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.RecursiveAction;

/**
 * The CPU backend's worker threads: a {@link ForkJoinPool} of a fixed size, or none when there is one
 * thread. {@link #forRange} cuts an index range into pieces and runs them on the pool; the caller waits.
 */
final class WorkerPool implements AutoCloseable {

    /** Work on the indices {@code [from, to)}. */
    @FunctionalInterface
    interface RangeBody {
        void run(int from, int to);
    }

    private final int threads;
    private final ForkJoinPool pool;

    WorkerPool(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("the CPU backend needs at least 1 thread, got " + threads);
        }
        this.threads = threads;
        this.pool = threads == 1 ? null : new ForkJoinPool(threads);
    }

    int threads() {
        return threads;
    }

    /**
     * Runs {@code body} over {@code [0, n)} in pieces of {@code grain} indices (the last may be shorter),
     * in parallel when there is more than one piece and more than one thread.
     */
    void forRange(int n, int grain, RangeBody body) {
        int pieces = (int) ((n + (long) grain - 1) / grain);
        if (n <= 0) {
            return;
        }
        if (pool == null || pieces <= 1) {
            body.run(0, n);
            return;
        }
        pool.invoke(new Pieces(body, n, grain, 0, pieces));
    }

    /** Pieces {@code [lo, hi)} of a range; splits in halves until one piece is left. */
    private static final class Pieces extends RecursiveAction {
        private final RangeBody body;
        private final int n;
        private final int grain;
        private final int lo;
        private final int hi;

        Pieces(RangeBody body, int n, int grain, int lo, int hi) {
            this.body = body;
            this.n = n;
            this.grain = grain;
            this.lo = lo;
            this.hi = hi;
        }

        @Override
        protected void compute() {
            if (hi - lo == 1) {
                body.run(lo * grain, (int) Math.min(n, (long) hi * grain));
                return;
            }
            int mid = (lo + hi) >>> 1;
            invokeAll(new Pieces(body, n, grain, lo, mid), new Pieces(body, n, grain, mid, hi));
        }
    }

    @Override
    public void close() {
        if (pool != null) {
            pool.shutdownNow();
        }
    }
}
