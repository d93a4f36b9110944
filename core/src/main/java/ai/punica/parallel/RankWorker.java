package ai.punica.parallel;

import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The thread of one tensor-parallel rank other than 0. Everything done on that rank's backend (making it,
 * loading its shard, its steps, LoRA copies, closing) runs here, one task at a time, so a backend bound to
 * its calling thread (a CUDA context) sees only this thread.
 */
final class RankWorker implements AutoCloseable {
    private final int rank;
    private final ExecutorService thread;

    RankWorker(int rank) {
        this.rank = rank;
        this.thread = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "punica-tp-rank-" + rank);
            t.setDaemon(true);
            return t;
        });
    }

    int rank() {
        return rank;
    }

    /** Starts {@code task} on this rank's thread. */
    <T> Future<T> submit(Callable<T> task) {
        return thread.submit(task);
    }

    /** Runs {@code task} on this rank's thread and waits for it; its exception is rethrown as it was. */
    <T> T call(Callable<T> task) {
        return await(submit(task));
    }

    /** The result of a task of this rank; its exception is rethrown as it was (a checked one wrapped). */
    static <T> T await(Future<T> future) {
        boolean interrupted = false;
        try {
            while (true) {
                try {
                    return future.get();
                } catch (InterruptedException e) {
                    interrupted = true; // the rank's work must finish before anything else touches its state
                }
            }
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof RuntimeException re) {
                throw re;
            }
            if (cause instanceof Error err) {
                throw err;
            }
            throw new IllegalStateException(cause);
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void close() {
        thread.shutdown();
    }
}
