package ai.punica.backend.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Device time per kernel name, from an event recorded before and after every launch on the stream it
 * goes to. Turned on with {@code -Dpunica.cuda.profile=true}; the events themselves cost a few
 * microseconds of host time per launch, so step times measured while profiling are not representative,
 * but the device time of each kernel is. Sums, counts and the gaps between launches (the device idle
 * while the host enqueues) are reported by {@link #report}.
 */
final class KernelProfiler {
    private final Driver driver;
    private final List<MemorySegment> pool = new ArrayList<>();
    private final List<String> names = new ArrayList<>();
    /** The stream of each launch: gaps are counted between consecutive launches of one stream. */
    private final List<MemorySegment> streams = new ArrayList<>();
    private int used;

    private record Total(long count, double millis) {
    }

    private final Map<String, Total> totals = new LinkedHashMap<>();
    private double gapMillis;
    private long launches;

    KernelProfiler(Driver driver) {
        this.driver = driver;
    }

    /** Records the start of a launch named {@code name} on {@code stream}; pair with {@link #end}. */
    void begin(String name, MemorySegment stream) {
        if (used >= 20_000) {
            collect();
        }
        names.add(name);
        streams.add(stream);
        driver.eventRecord(event(used++), stream);
    }

    void end(MemorySegment stream) {
        driver.eventRecord(event(used++), stream);
    }

    private MemorySegment event(int i) {
        while (pool.size() <= i) {
            pool.add(driver.eventCreate());
        }
        return pool.get(i);
    }

    /** Waits for the stream and folds the recorded launches into the totals (call at a quiet point). */
    void collect() {
        if (used == 0) {
            return;
        }
        for (int k = 0; k < names.size(); k++) {
            driver.eventSynchronize(pool.get(2 * k + 1));
        }
        Map<MemorySegment, Integer> lastOnStream = new HashMap<>();
        for (int k = 0; k < names.size(); k++) {
            double ms = driver.eventElapsedMillis(pool.get(2 * k), pool.get(2 * k + 1));
            totals.merge(names.get(k), new Total(1, ms), (a, b) -> new Total(a.count + b.count, a.millis + b.millis));
            Integer previous = lastOnStream.put(streams.get(k), k);
            if (previous != null) {
                gapMillis += driver.eventElapsedMillis(pool.get(2 * previous + 1), pool.get(2 * k));
            }
        }
        launches += names.size();
        names.clear();
        streams.clear();
        used = 0;
    }

    /** A table of kernel → launches, total device ms, share; then resets. */
    String report() {
        collect();
        double sum = totals.values().stream().mapToDouble(Total::millis).sum();
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT,
                "kernel profile: %d launches, %.3f ms in kernels, %.3f ms between them%n", launches, sum, gapMillis));
        totals.entrySet().stream()
                .sorted((a, b) -> Double.compare(b.getValue().millis, a.getValue().millis))
                .forEach(e -> sb.append(String.format(Locale.ROOT, "  %-28s %7d launches %10.3f ms %6.1f%%%n",
                        e.getKey(), e.getValue().count, e.getValue().millis, 100 * e.getValue().millis / sum)));
        totals.clear();
        gapMillis = 0;
        launches = 0;
        return sb.toString();
    }

    void close() {
        for (MemorySegment e : pool) {
            driver.eventDestroy(e);
        }
        pool.clear();
    }
}
