package ai.punica.lora;

import java.time.Duration;
import java.util.List;

/**
 * How adapters are found, cached and admitted, beyond the engine's sizes (slots, rank, host bytes).
 *
 * @param sources         where a request's unregistered adapter name is looked up, in order; none: only
 *                        registered adapters are served
 * @param missTtl         how long a name that no source has (or whose files failed to load) is answered
 *                        from memory, without looking again
 * @param missCapacity    most such names remembered; the oldest is forgotten first
 * @param maxLoras        most distinct adapters in one step (vLLM's {@code max_loras}); 0 = every slot
 * @param starvationLimit how long a request may wait for adapter room (the {@code maxLoras} cap or a free
 *                        slot) before requests behind it are held back until it runs
 * @param prefetch        how many waiting requests, oldest first, have their adapters read from disk into
 *                        host memory ahead of admission; 0 = as many as there are slots
 */
public record AdapterOptions(List<AdapterSource> sources, Duration missTtl, int missCapacity, int maxLoras,
                             Duration starvationLimit, int prefetch) {

    public AdapterOptions {
        sources = List.copyOf(sources);
        if (missTtl.isNegative() || missCapacity < 0 || maxLoras < 0 || starvationLimit.isNegative() || prefetch < 0) {
            throw new IllegalArgumentException("adapter options must not be negative: " + this);
        }
    }

    /** No sources, misses remembered 10 s (up to 4096 names), a cap of one adapter per slot, 1 s starvation limit. */
    public static AdapterOptions defaults() {
        return new AdapterOptions(List.of(), Duration.ofSeconds(10), 4096, 0, Duration.ofSeconds(1), 0);
    }

    public AdapterOptions withSources(List<AdapterSource> all) {
        return new AdapterOptions(all, missTtl, missCapacity, maxLoras, starvationLimit, prefetch);
    }

    public AdapterOptions withMisses(Duration ttl, int capacity) {
        return new AdapterOptions(sources, ttl, capacity, maxLoras, starvationLimit, prefetch);
    }

    public AdapterOptions withMaxLoras(int cap) {
        return new AdapterOptions(sources, missTtl, missCapacity, cap, starvationLimit, prefetch);
    }

    public AdapterOptions withStarvationLimit(Duration limit) {
        return new AdapterOptions(sources, missTtl, missCapacity, maxLoras, limit, prefetch);
    }

    public AdapterOptions withPrefetch(int requests) {
        return new AdapterOptions(sources, missTtl, missCapacity, maxLoras, starvationLimit, requests);
    }
}
