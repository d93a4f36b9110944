package ai.punica.cluster;

import java.util.Set;

/**
 * One engine as a placement policy sees it.
 *
 * @param running          requests on the engine (running or waiting there)
 * @param maxRunning       the largest running batch it takes
 * @param freeKvPages      KV pages free
 * @param pageSize         tokens per KV page
 * @param residentAdapters adapters in a device slot now
 * @param available        false while the engine is unreachable, failing its health probe, or stopping
 */
public record EngineState(int running, int maxRunning, int freeKvPages, int pageSize, Set<String> residentAdapters,
                          boolean available) {

    public EngineState {
        residentAdapters = Set.copyOf(residentAdapters);
        if (pageSize < 1) {
            throw new IllegalArgumentException("page size must be positive, got " + pageSize);
        }
    }

    /**
     * Room for a request of {@code tokens} tokens (prompt, plus generated ones for a migration): a running
     * slot, and KV pages for those tokens and the next one.
     */
    public boolean hasRoomFor(int tokens) {
        return available && running < maxRunning && freeKvPages >= (tokens + pageSize) / pageSize;
    }

    public boolean hasAdapter(String adapter) {
        return adapter != null && residentAdapters.contains(adapter);
    }
}
