package ai.punica.server;

import ai.punica.cluster.EngineCluster;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.util.function.ToLongFunction;

/**
 * The scheduler over engines' own metrics, read from its {@link EngineCluster.Snapshot} at scrape time:
 * placements per engine, migrations by reason, the queue, and busy and idle engines (an engine idle longer
 * than the configured time can be released by an autoscaler).
 */
final class ClusterMetrics {
    private ClusterMetrics() {
    }

    static void register(PrometheusRegistry registry, EngineCluster cluster) {
        CounterWithCallback.builder().name("punica_cluster_placements_total")
                .help("Requests the scheduler placed on each engine.").labelNames("engine", "policy")
                .callback(cb -> {
                    var s = cluster.snapshot();
                    s.engines().forEach(e -> cb.call(e.placements(), e.name(), s.policy()));
                }).register(registry);
        CounterWithCallback.builder().name("punica_cluster_migrations_total")
                .help("Requests moved to another engine, by reason.").labelNames("reason")
                .callback(cb -> cluster.snapshot().migrations().forEach((r, n) -> cb.call(n, r.label)))
                .register(registry);
        CounterWithCallback.builder().name("punica_cluster_queue_refusals_total")
                .help("Requests refused (HTTP 429) because the scheduler's queue was full.")
                .callback(cb -> cb.call(cluster.snapshot().queueRefusals())).register(registry);
        gauge(registry, cluster, "punica_cluster_queue_length",
                "Requests waiting in the scheduler's queue for an engine with room.", EngineCluster.Snapshot::queued);
        gauge(registry, cluster, "punica_cluster_engines_busy", "Engines with at least one request.",
                EngineCluster.Snapshot::busyEngines);
        gauge(registry, cluster, "punica_cluster_engines_idle",
                "Engines with no request for longer than the idle time (--idle-after).",
                EngineCluster.Snapshot::idleEngines);
        GaugeWithCallback.builder().name("punica_engine_idle")
                .help("1 when the engine has had no request for longer than the idle time, else 0.")
                .labelNames("engine")
                .callback(cb -> cluster.snapshot().engines().forEach(e -> cb.call(e.idle() ? 1 : 0, e.name())))
                .register(registry);
    }

    /** A gauge without labels: one number of the snapshot taken at scrape time. */
    private static void gauge(PrometheusRegistry registry, EngineCluster cluster, String name, String help,
                              ToLongFunction<EngineCluster.Snapshot> value) {
        GaugeWithCallback.builder().name(name).help(help)
                .callback(cb -> cb.call(value.applyAsLong(cluster.snapshot()))).register(registry);
    }
}
