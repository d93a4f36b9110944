package ai.punica.lora;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Names that could not be resolved, each with the answer given, for a short time and up to a fixed count
 * (oldest forgotten first): a client that repeats a wrong or broken name costs one lookup per
 * {@code ttlNanos}, not one per request. Thread-safe.
 */
final class RecentMisses {
    private record Miss(String message, long expiresNanos) {
    }

    private final long ttlNanos;
    private final int capacity;
    /** Insertion order = expiry order, since every entry lives the same time. */
    private final LinkedHashMap<String, Miss> misses = new LinkedHashMap<>();

    RecentMisses(long ttlNanos, int capacity) {
        this.ttlNanos = ttlNanos;
        this.capacity = capacity;
    }

    /** The answer remembered for {@code name}, or null. */
    synchronized String get(String name, long nowNanos) {
        expire(nowNanos);
        Miss m = misses.get(name);
        return m == null ? null : m.message();
    }

    synchronized void put(String name, String message, long nowNanos) {
        if (capacity == 0 || ttlNanos == 0) {
            return;
        }
        expire(nowNanos);
        misses.remove(name); // re-inserted at the end with a fresh expiry
        misses.put(name, new Miss(message, nowNanos + ttlNanos));
        Iterator<String> oldest = misses.keySet().iterator();
        while (misses.size() > capacity) {
            oldest.next();
            oldest.remove();
        }
    }

    synchronized void forget(String name) {
        misses.remove(name);
    }

    synchronized int size() {
        return misses.size();
    }

    private void expire(long nowNanos) {
        Iterator<Map.Entry<String, Miss>> it = misses.entrySet().iterator();
        while (it.hasNext() && it.next().getValue().expiresNanos() - nowNanos <= 0) {
            it.remove();
        }
    }
}
