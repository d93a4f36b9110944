package ai.punica.cli;

import java.util.concurrent.CountDownLatch;
import sun.misc.Signal;

/**
 * SIGTERM and SIGINT (Ctrl-C) handled, not a shutdown hook: the process stops its work in order and exits 0,
 * not 143. Used by {@code punica serve} and {@code punica router}.
 */
final class StopSignals {
    private StopSignals() {
    }

    /**
     * Prints {@code readyLine} to stdout, then blocks until SIGTERM or SIGINT has arrived and {@code stop} has run
     * (on a thread of its own). The handlers are in place before the line is printed, so whoever waits for that
     * line may signal at once.
     */
    static void announceAndAwait(String readyLine, Runnable stop) throws InterruptedException {
        CountDownLatch stopped = new CountDownLatch(1);
        onStop(() -> {
            stop.run();
            stopped.countDown();
        });
        System.out.println(readyLine);
        System.out.flush();
        stopped.await();
    }

    /** Runs {@code stop} on a thread of its own when either signal arrives. */
    private static void onStop(Runnable stop) {
        for (String signal : new String[] {"TERM", "INT"}) {
            try {
                Signal.handle(new Signal(signal), s -> Thread.ofPlatform().name("punica-stop").start(stop));
            } catch (IllegalArgumentException e) {
                // SIGINT is ignored in background jobs and cannot be handled then; SIGTERM still works.
            }
        }
    }
}
