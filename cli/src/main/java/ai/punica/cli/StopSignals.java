package ai.punica.cli;

import sun.misc.Signal;

/**
 * SIGTERM and SIGINT (Ctrl-C) handled, not a shutdown hook: the process stops its work in order and exits 0,
 * not 143.
 */
final class StopSignals {
    private StopSignals() {
    }

    /** Runs {@code stop} on a thread of its own when either signal arrives. */
    static void onStop(Runnable stop) {
        for (String signal : new String[] {"TERM", "INT"}) {
            try {
                Signal.handle(new Signal(signal), s -> Thread.ofPlatform().name("punica-stop").start(stop));
            } catch (IllegalArgumentException e) {
                // SIGINT is ignored in background jobs and cannot be handled then; SIGTERM still works.
            }
        }
    }
}
