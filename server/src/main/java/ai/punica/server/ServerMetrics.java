package ai.punica.server;

import ai.punica.backend.PinnedHostMemory;
import ai.punica.cluster.EngineCluster;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineStats;
import ai.punica.engine.FinishReason;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.LoadStage;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToDoubleFunction;
import java.util.function.ToLongFunction;

/**
 * The metrics Kubernetes inference gateways and vLLM dashboards read, under vLLM's names (the
 * Prometheus Java client accepts the {@code vllm:} colon form), labelled {@code model_name} with the
 * base model's id as vLLM does, and {@code engine} (its index) when the server runs several engines.
 * Queue, KV and adapter gauges are read from the engine's latest
 * {@link EngineStats} at scrape time; latency histograms are observed by the HTTP handlers.
 */
final class ServerMetrics {
    /** vLLM's bucket bounds, so dashboards built for vLLM show the same resolution. */
    private static final double[] TTFT_BUCKETS = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
            0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
    private static final double[] TPOT_BUCKETS = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
            1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
    /** Adapter load stages: from a fraction of a millisecond (a small adapter to a GPU) to seconds (a large one from a cold disk). */
    private static final double[] LORA_LOAD_BUCKETS = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
            1.0, 2.0, 5.0, 10.0};
    private static final double[] E2E_BUCKETS = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
            40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();
    private final String modelName;
    /** Engines by index; with more than one, every engine series carries an {@code engine} label. */
    private final List<Engine> engines;
    private final boolean labelEngines;
    private final Histogram timeToFirstToken;
    private final Histogram timePerOutputToken;
    private final Histogram interTokenLatency;
    private final Histogram e2eLatency;
    private final Counter requestSuccess;

    ServerMetrics(List<Engine> engines, EngineCluster cluster) {
        this.engines = List.copyOf(engines);
        this.labelEngines = engines.size() > 1;
        this.modelName = engines.getFirst().baseModelName();
        gauge("vllm:num_requests_running", "Number of requests in model execution batches.", EngineStats::running);
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", EngineStats::waiting);
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", EngineStats::kvCacheUsage);
        GaugeWithCallback.builder()
                .name("vllm:lora_requests_info")
                .help("Running stats on lora requests.")
                .labelNames(labelEngines ? new String[] {"max_lora", "running_lora_adapters", "waiting_lora_adapters",
                        "engine"} : new String[] {"max_lora", "running_lora_adapters", "waiting_lora_adapters"})
                .callback(cb -> forEachEngine((s, i) -> {
                    // vLLM's value is the time of the last update; the information is in the labels (no model_name).
                    String max = Integer.toString(s.loraSlots());
                    String running = String.join(",", s.runningAdapters());
                    String waiting = String.join(",", s.waitingAdapters());
                    double now = System.currentTimeMillis() / 1000.0;
                    if (labelEngines) {
                        cb.call(now, max, running, waiting, Integer.toString(i));
                    } else {
                        cb.call(now, max, running, waiting);
                    }
                }))
                .register(registry);
        counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", EngineStats::promptTokens, true);
        counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
                EngineStats::generationTokens, true);
        counter("vllm:num_preemptions_total", "Cumulative number of preemptions from the engine.",
                EngineStats::preemptions, true);
        counter("punica_adapter_loads_total", "Adapters copied into a backend slot.", EngineStats::adapterLoads,
                false);
        counter("punica_adapter_evictions_total", "Adapters removed from a backend slot to make room.",
                EngineStats::adapterEvictions, false);
        adapterCounter("punica:lora_source_lookups_total", "Adapter sources asked for a name nobody registered (one "
                + "per cold name, not per request).", AdapterManager::sourceLookupCount);
        adapterCounter("punica:lora_resolutions_total", "Adapters registered by on-demand resolution.",
                AdapterManager::resolutionCount);
        adapterCounter("punica:pinned_host_allocations_total", "Page-locked blocks for adapters' host copies taken "
                + "from the driver (each pins its memory; 0 without a GPU).", a -> a.pinnedHostStats()
                .map(PinnedHostMemory.Stats::driverAllocations).orElse(0L));
        adapterCounter("punica:pinned_host_reuses_total", "Page-locked adapter blocks reused after an adapter gave "
                + "one back.", a -> a.pinnedHostStats().map(PinnedHostMemory.Stats::reused).orElse(0L));
        Histogram loraLoad = Histogram.builder().name("punica:lora_load_seconds")
                .help("Time of each adapter load stage: disk (files to host memory) and device (host memory to a "
                        + "backend slot, until the engine saw the copy complete).")
                .classicOnly().classicUpperBounds(LORA_LOAD_BUCKETS)
                .labelNames(labelEngines ? new String[] {"stage", "engine"} : new String[] {"stage"})
                .register(registry);
        for (int i = 0; i < engines.size(); i++) {
            String[] engineLabel = labelEngines ? new String[] {Integer.toString(i)} : new String[0];
            for (LoadStage stage : LoadStage.values()) {
                loraLoad.labelValues(stageValues(stage, engineLabel)); // every series exists from the start, at zero
            }
            engines.get(i).adapters().addLoadListener((stage, adapter, nanos) ->
                    loraLoad.labelValues(stageValues(stage, engineLabel)).observe(nanos / 1e9));
        }
        if (cluster != null) {
            ClusterMetrics.register(registry, cluster);
        }
        timeToFirstToken = histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in "
                + "seconds.", TTFT_BUCKETS);
        timePerOutputToken = histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token "
                + "in seconds (per request: decode time / (generated tokens - 1)).", TPOT_BUCKETS);
        interTokenLatency = histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in "
                + "seconds.", TPOT_BUCKETS);
        e2eLatency = histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in "
                + "seconds.", E2E_BUCKETS);
        requestSuccess = Counter.builder()
                .name("vllm:request_success_total")
                .help("Count of successfully processed requests.")
                .labelNames("finished_reason", "model_name")
                .register(registry);
    }

    void observeTimeToFirstToken(double seconds) {
        timeToFirstToken.labelValues(modelName).observe(seconds);
    }

    void observeTimePerOutputToken(double seconds) {
        timePerOutputToken.labelValues(modelName).observe(seconds);
    }

    void observeInterTokenLatency(double seconds) {
        interTokenLatency.labelValues(modelName).observe(seconds);
    }

    void observeE2eLatency(double seconds) {
        e2eLatency.labelValues(modelName).observe(seconds);
    }

    void countFinished(FinishReason reason) {
        requestSuccess.labelValues(reason.openAiName(), modelName).inc();
    }

    String contentType() {
        return PrometheusTextFormatWriter.CONTENT_TYPE;
    }

    void write(OutputStream out) throws IOException {
        writer.write(out, registry.scrape());
    }

    /** The label names of an engine series: {@code model_name}, then {@code engine} when there are several. */
    private String[] labels() {
        List<String> names = new ArrayList<>();
        names.add("model_name");
        if (labelEngines) {
            names.add("engine");
        }
        return names.toArray(String[]::new);
    }

    private String[] values(int engine) {
        List<String> values = new ArrayList<>();
        values.add(modelName);
        if (labelEngines) {
            values.add(Integer.toString(engine));
        }
        return values.toArray(String[]::new);
    }

    private void forEachEngine(java.util.function.ObjIntConsumer<EngineStats> each) {
        for (int i = 0; i < engines.size(); i++) {
            each.accept(engines.get(i).stats(), i);
        }
    }

    private void gauge(String name, String help, ToDoubleFunction<EngineStats> value) {
        GaugeWithCallback.builder().name(name).help(help).labelNames(labels())
                .callback(cb -> forEachEngine((s, i) -> cb.call(value.applyAsDouble(s), values(i))))
                .register(registry);
    }

    /** A counter per engine; {@code byModel}: with the model_name label (vLLM's), else only engine's. */
    private void counter(String name, String help, ToLongFunction<EngineStats> value, boolean byModel) {
        var b = CounterWithCallback.builder().name(name).help(help);
        if (byModel) {
            b.labelNames(labels()).callback(cb -> forEachEngine((s, i) -> cb.call(value.applyAsLong(s), values(i))));
        } else if (labelEngines) {
            b.labelNames("engine").callback(cb -> forEachEngine((s, i) ->
                    cb.call(value.applyAsLong(s), Integer.toString(i))));
        } else {
            b.callback(cb -> cb.call(value.applyAsLong(engines.getFirst().stats())));
        }
        b.register(registry);
    }

    /** A counter of each engine's adapter manager, with the {@code engine} label when there are several. */
    private void adapterCounter(String name, String help, ToLongFunction<AdapterManager> value) {
        var b = CounterWithCallback.builder().name(name).help(help);
        if (labelEngines) {
            b.labelNames("engine").callback(cb -> {
                for (int i = 0; i < engines.size(); i++) {
                    cb.call(value.applyAsLong(engines.get(i).adapters()), Integer.toString(i));
                }
            });
        } else {
            b.callback(cb -> cb.call(value.applyAsLong(engines.getFirst().adapters())));
        }
        b.register(registry);
    }

    private static String[] stageValues(LoadStage stage, String[] engineLabel) {
        String[] values = new String[1 + engineLabel.length];
        values[0] = stage.label();
        System.arraycopy(engineLabel, 0, values, 1, engineLabel.length);
        return values;
    }

    private Histogram histogram(String name, String help, double[] buckets) {
        return Histogram.builder().name(name).help(help).classicOnly().classicUpperBounds(buckets)
                .labelNames("model_name")
                .register(registry);
    }
}
