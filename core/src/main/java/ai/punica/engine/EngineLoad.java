package ai.punica.engine;

import java.util.Set;

/**
 * What a placement policy reads of an engine (published after every step, read from any thread).
 *
 * @param running           requests in the running batch
 * @param waiting           requests accepted and not yet running
 * @param maxRunning        the largest running batch
 * @param freeKvPages       KV pages not held by any request, less those the waiting requests need
 * @param pageSize          tokens per KV page
 * @param residentAdapters  adapters whose weights are in a device slot now
 * @param idleSinceNanos    {@link System#nanoTime()} since when no request has been running or waiting;
 *                          0 while busy
 * @param migrationsOut     requests this engine handed to another engine instead of preempting them
 */
public record EngineLoad(int running, int waiting, int maxRunning, int freeKvPages, int pageSize,
                         Set<String> residentAdapters, long idleSinceNanos, long migrationsOut) {

    public EngineLoad {
        residentAdapters = Set.copyOf(residentAdapters);
    }
}
