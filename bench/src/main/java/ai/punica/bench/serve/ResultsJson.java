package ai.punica.bench.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * A run as JSON, schema {@value #SCHEMA} (documented in docs/benchmarks/serving.md). Latencies in
 * milliseconds, times in seconds from the run's start, throughputs per second, rounded to six decimals (times to
 * the microsecond, which keeps a run of 100,000 chunk times in a few MB); a value that does not exist
 * (a percentile of no samples, a metric the server does not export) is null.
 */
public final class ResultsJson {
    public static final String SCHEMA = "punica-bench-serve/1";
    static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private ResultsJson() {
    }

    public static void write(RunResult run, Path file) throws IOException {
        Files.writeString(file, JSON.writeValueAsString(toJson(run)) + "\n");
    }

    public static ObjectNode toJson(RunResult run) {
        ObjectNode root = JSON.createObjectNode();
        root.put("schema", SCHEMA);
        root.put("label", run.label());
        root.put("started_at", run.startedAt().toString());
        root.set("config", config(run));
        RunSummary s = run.summary();
        ObjectNode summary = root.putObject("summary");
        summary.put("requests", s.requests());
        summary.put("completed", s.completed());
        summary.put("failed", s.failed());
        ObjectNode errors = summary.putObject("errors");
        s.errors().forEach(errors::put);
        num(summary, "duration_s", s.durationSeconds());
        summary.put("prompt_tokens", s.promptTokens());
        summary.put("output_tokens", s.outputTokens());
        num(summary, "request_throughput", s.requestsPerSecond());
        num(summary, "output_throughput", s.outputTokensPerSecond());
        num(summary, "total_token_throughput", s.totalTokensPerSecond());
        summary.set("ttft_ms", distribution(s.ttftMs()));
        summary.set("tpot_ms", distribution(s.tpotMs()));
        summary.set("itl_ms", distribution(s.itlMs()));
        summary.set("e2e_ms", distribution(s.e2eMs()));
        ObjectNode goodput = summary.putObject("goodput");
        num(goodput, "slo_ttft_ms", s.slo().ttftMs());
        num(goodput, "slo_tpot_ms", s.slo().tpotMs());
        goodput.put("requests_meeting_slo", s.goodRequests());
        num(goodput, "request_throughput", s.goodputRequestsPerSecond());
        num(goodput, "output_throughput", s.goodputTokensPerSecond());

        ArrayNode perAdapter = root.putArray("per_adapter");
        for (RunSummary.AdapterSummary a : s.perAdapter()) {
            ObjectNode o = perAdapter.addObject();
            o.put("model", a.model());
            o.put("requests", a.requests());
            o.put("failed", a.failed());
            o.put("output_tokens", a.outputTokens());
            num(o, "output_throughput", a.outputTokensPerSecond());
            o.set("ttft_ms", distribution(a.ttftMs()));
            o.set("tpot_ms", distribution(a.tpotMs()));
            o.set("e2e_ms", distribution(a.e2eMs()));
        }

        ObjectNode timeline = root.putObject("timeline");
        num(timeline, "bin_s", s.timeline().binSeconds());
        ArrayNode tok = timeline.putArray("output_throughput");
        for (double v : s.timeline().outputTokensPerSecond()) {
            tok.add(round(v));
        }
        ArrayNode fin = timeline.putArray("finished_per_s");
        for (double v : s.timeline().finishedPerSecond()) {
            fin.add(round(v));
        }
        ArrayNode inflight = timeline.putArray("in_flight");
        for (int v : s.timeline().inFlight()) {
            inflight.add(v);
        }

        ObjectNode metrics = root.putObject("server_metrics");
        metrics.put("url", run.config().serverRoot().resolve("/metrics").toString());
        if (run.metricsProblem() == null) {
            metrics.putNull("problem");
        } else {
            metrics.put("problem", run.metricsProblem());
        }
        ArrayNode samples = metrics.putArray("samples");
        for (MetricsScraper.Sample m : run.serverMetrics()) {
            ObjectNode o = samples.addObject();
            num(o, "t_s", m.seconds());
            num(o, "waiting", m.waiting());
            num(o, "running", m.running());
            num(o, "kv_cache_usage", m.kvCacheUsage());
        }

        ArrayNode requests = root.putArray("requests");
        for (RequestRecord r : run.requests()) {
            ObjectNode o = requests.addObject();
            o.put("index", r.index());
            o.put("model", r.model());
            num(o, "scheduled_s", r.scheduledSeconds());
            num(o, "sent_s", r.sentSeconds());
            num(o, "end_s", r.endSeconds());
            num(o, "ttft_ms", r.ttft() * 1e3);
            num(o, "tpot_ms", r.tpot() * 1e3);
            num(o, "e2e_ms", r.e2e() * 1e3);
            o.put("prompt_tokens", r.promptTokens());
            o.put("output_tokens", r.outputTokens());
            ArrayNode chunks = o.putArray("chunk_s");
            for (double t : r.chunkSeconds()) {
                chunks.add(round(t));
            }
            if (r.ok()) {
                o.putNull("error_kind");
                o.putNull("error");
            } else {
                o.put("error_kind", r.errorKind());
                o.put("error", r.errorMessage());
            }
        }
        return root;
    }

    private static ObjectNode config(RunResult run) {
        ServeBenchConfig c = run.config();
        ObjectNode o = JSON.createObjectNode();
        o.put("base_url", c.baseUrl().toString());
        o.put("endpoint", c.chat() ? "/v1/chat/completions" : "/v1/completions");
        o.put("base_model", run.baseModel());
        o.put("workload", c.workload().describe());
        o.put("adapters_available", run.adaptersAvailable());
        ObjectNode arrivals = o.putObject("arrivals");
        switch (c.arrivals()) {
            case ArrivalProcess.OpenLoop open -> {
                arrivals.put("type", open.burstiness() == 1 ? "poisson" : "gamma");
                arrivals.put("schedule", open.schedule().describe());
                num(arrivals, "burstiness", open.burstiness());
                arrivals.put("max_requests", open.maxRequests());
            }
            case ArrivalProcess.ClosedLoop closed -> {
                arrivals.put("type", "concurrent");
                arrivals.put("clients", closed.clients());
                arrivals.put("max_requests", closed.requests());
            }
        }
        ObjectNode lengths = o.putObject("lengths");
        if (c.dataset() != null) {
            lengths.put("source", "dataset");
            lengths.put("file", c.dataset().toString());
        } else {
            lengths.put("source", "synthetic");
            lengths.put("input_len", c.inputLen());
            lengths.put("output_len", c.outputLen());
            num(lengths, "range_ratio", c.rangeRatio());
        }
        o.put("token_counter", run.tokenCounter());
        o.put("ignore_eos", c.ignoreEos());
        num(o, "temperature", c.temperature());
        o.put("seed", c.seed());
        o.put("warmup_requests", c.warmupRequests());
        return o;
    }

    static ObjectNode distribution(Distribution d) {
        ObjectNode o = JSON.createObjectNode();
        o.put("count", d.count());
        for (Map.Entry<String, Double> e : Map.of("mean", d.mean(), "min", d.min(), "p50", d.p50(), "p90", d.p90(),
                "p95", d.p95(), "p99", d.p99(), "max", d.max()).entrySet().stream()
                .sorted(Map.Entry.comparingByKey()).toList()) {
            num(o, e.getKey(), e.getValue());
        }
        return o;
    }

    private static void num(ObjectNode o, String field, double v) {
        if (Double.isFinite(v)) {
            o.put(field, round(v));
        } else {
            o.putNull(field);
        }
    }

    /** Six decimals: a microsecond of a time in seconds, a nanosecond of a latency in ms. */
    private static double round(double v) {
        return Math.abs(v) < 1e12 ? Math.round(v * 1e6) / 1e6 : v;
    }
}
