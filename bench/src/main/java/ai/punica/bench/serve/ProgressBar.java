package ai.punica.bench.serve;

import java.io.PrintStream;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;

/** A one-line progress bar on stderr, redrawn with a carriage return a few times a second. */
final class ProgressBar implements AutoCloseable {
    private static final int WIDTH = 30;

    private final PrintStream out;
    private final String label;
    private final int total;
    private final long startNanos = System.nanoTime();
    private final AtomicInteger done = new AtomicInteger();
    private final AtomicInteger failed = new AtomicInteger();
    private final AtomicInteger tokens = new AtomicInteger();
    private final Thread thread;

    ProgressBar(PrintStream out, String label, int total, boolean enabled) {
        this.out = out;
        this.label = label;
        this.total = total;
        this.thread = enabled ? Thread.ofVirtual().start(this::loop) : null;
    }

    void finished(RequestRecord r) {
        done.incrementAndGet();
        if (!r.ok()) {
            failed.incrementAndGet();
        } else {
            tokens.addAndGet(r.outputTokens());
        }
    }

    private void loop() {
        while (!Thread.currentThread().isInterrupted()) {
            draw();
            try {
                Thread.sleep(250);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private void draw() {
        int d = done.get();
        int filled = total == 0 ? WIDTH : (int) ((long) d * WIDTH / total);
        double seconds = (System.nanoTime() - startNanos) / 1e9;
        out.printf(Locale.ROOT, "\r%s [%s%s] %d/%d requests, %d failed, %.0f tok/s, %.1f s ", label,
                "#".repeat(filled), " ".repeat(WIDTH - filled), d, total, failed.get(), tokens.get() / Math.max(seconds,
                        1e-9), seconds);
        out.flush();
    }

    @Override
    public void close() {
        if (thread != null) {
            thread.interrupt();
            try {
                thread.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            draw();
            out.println();
        }
    }
}
