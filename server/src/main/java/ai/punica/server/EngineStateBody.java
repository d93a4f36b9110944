package ai.punica.server;

import ai.punica.cluster.EngineCluster;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineLoad;
import ai.punica.engine.EngineStats;
import java.util.ArrayList;
import java.util.List;

/**
 * GET /v1/engine/state: what a router's placement and an autoscaler read of this server, in one small JSON
 * object (snake_case): per engine its running and waiting requests, room (max running, free KV pages), the
 * adapters in its device slots and how long it has been idle; the scheduler's policy and queue when the server
 * runs several engines.
 */
record EngineStateBody(String object, String model, String policy, int queued, List<EngineEntry> engines) {

    /**
     * @param idleSeconds seconds since the engine last had a request (0 while busy)
     * @param idle        idle for longer than --idle-after (always false without a scheduler over engines)
     * @param requests    requests placed on the engine and not finished, by the scheduler's own exact book (running
     *                    and waiting as the engine last published them may be a step behind); without a scheduler,
     *                    running + waiting
     */
    record EngineEntry(String name, int requests, int running, int waiting, int maxRunning, int freeKvPages, int kvPagesTotal,
                       int pageSize, List<String> residentAdapters, double idleSeconds, boolean idle,
                       long migrationsOut) {
    }

    static EngineStateBody of(List<Engine> engines, EngineCluster cluster) {
        long now = System.nanoTime();
        EngineCluster.Snapshot snap = cluster == null ? null : cluster.snapshot();
        List<EngineEntry> entries = new ArrayList<>();
        for (int i = 0; i < engines.size(); i++) {
            Engine e = engines.get(i);
            EngineLoad load = e.load();
            EngineStats stats = e.stats();
            double idleSeconds = load.idleSinceNanos() == 0 ? 0 : (now - load.idleSinceNanos()) / 1e9;
            int requests = snap != null ? snap.engines().get(i).requests() : load.running() + load.waiting();
            entries.add(new EngineEntry(Integer.toString(i), requests, load.running(), load.waiting(), load.maxRunning(),
                    load.freeKvPages(), stats.kvPagesTotal(), load.pageSize(),
                    load.residentAdapters().stream().sorted().toList(), idleSeconds,
                    snap != null && snap.engines().get(i).idle(), load.migrationsOut()));
        }
        return new EngineStateBody("engine.state", engines.getFirst().baseModelName(),
                snap == null ? null : snap.policy(), snap == null ? 0 : snap.queued(), List.copyOf(entries));
    }
}
