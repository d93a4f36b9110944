package ai.punica.bench.serve;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/**
 * A run as one self-contained HTML page: the configuration, the summary, latency CDFs (TTFT, TPOT, ITL,
 * end-to-end), throughput and requests in flight over time, the server's queue and KV-cache usage over time, and
 * the per-adapter table. Plots are inline SVG ({@link SvgChart}); no script, font or stylesheet is fetched.
 */
public final class HtmlReport {
    private static final int ADAPTER_ROWS = 40;

    private HtmlReport() {
    }

    public static void write(RunResult run, Path file) throws IOException {
        Files.writeString(file, render(run));
    }

    public static String render(RunResult run) {
        RunSummary s = run.summary();
        List<RequestRecord> ok = run.requests().stream().filter(RequestRecord::ok).toList();
        StringBuilder h = new StringBuilder();
        h.append("""
                <!DOCTYPE html>
                <html lang="en"><head><meta charset="utf-8">
                <title>%s</title>
                <style>
                body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
                h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
                table { border-collapse: collapse; margin: 8px 0; }
                td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
                th { background: #f2f2f2; } td.l, th.l { text-align: left; }
                .plots { display: flex; flex-wrap: wrap; gap: 12px; }
                svg.plot { background: #fff; border: 1px solid #ddd; }
                svg .grid line { stroke: #e6e6e6; } svg .frame { fill: none; stroke: #888; }
                svg text { font: 11px system-ui, sans-serif; fill: #333; } svg .title { font-size: 13px; font-weight: 600; }
                svg .axis { font-size: 12px; } .note { color: #666; }
                </style></head><body>
                """.formatted(Html.escape("punica bench serve: " + run.label())));
        h.append("<h1>").append(Html.escape("Serving benchmark: " + run.label())).append("</h1>\n");
        h.append("<p class=\"note\">").append(Html.escape(describe(run))).append("</p>\n");

        h.append("<h2>Summary</h2>\n<table id=\"summary\">\n");
        row(h, "requests (completed / failed)", s.requests() + " (" + s.completed() + " / " + s.failed() + ")");
        if (!s.errors().isEmpty()) {
            row(h, "errors by kind", s.errors().toString());
        }
        row(h, "duration", fmt(s.durationSeconds()) + " s");
        row(h, "request throughput", fmt(s.requestsPerSecond()) + " req/s");
        row(h, "output token throughput", fmt(s.outputTokensPerSecond()) + " tok/s");
        row(h, "total token throughput", fmt(s.totalTokensPerSecond()) + " tok/s");
        row(h, "prompt / output tokens", s.promptTokens() + " / " + s.outputTokens());
        row(h, "goodput (TTFT ≤ " + fmt(s.slo().ttftMs()) + " ms, TPOT ≤ " + fmt(s.slo().tpotMs()) + " ms)",
                s.goodRequests() + " requests, " + fmt(s.goodputRequestsPerSecond()) + " req/s, "
                        + fmt(s.goodputTokensPerSecond()) + " tok/s");
        h.append("</table>\n");

        h.append("<table id=\"latency\"><tr><th class=\"l\">latency (ms)</th><th>mean</th><th>p50</th><th>p90</th>"
                + "<th>p99</th><th>max</th><th>samples</th></tr>\n");
        latencyRow(h, "TTFT", s.ttftMs());
        latencyRow(h, "TPOT", s.tpotMs());
        latencyRow(h, "ITL", s.itlMs());
        latencyRow(h, "end-to-end", s.e2eMs());
        h.append("</table>\n");

        h.append("<h2>Latency CDFs</h2>\n<div class=\"plots\">\n");
        double[] itl = ok.stream().flatMapToDouble(r -> Arrays.stream(r.interTokenLatencies())).map(v -> v * 1e3)
                .toArray();
        h.append(new SvgChart("cdf-ttft", "Time to first token", "TTFT (ms)", "fraction of requests")
                .cdf("TTFT", ms(ok, RequestRecord::ttft)).render());
        h.append(new SvgChart("cdf-tpot", "Time per output token", "TPOT (ms)", "fraction of requests")
                .cdf("TPOT", ms(ok, RequestRecord::tpot)).render());
        h.append(new SvgChart("cdf-itl", "Inter-token latency", "ITL (ms)", "fraction of gaps").cdf("ITL", itl)
                .render());
        h.append(new SvgChart("cdf-e2e", "End-to-end latency", "latency (ms)", "fraction of requests")
                .cdf("end-to-end", ms(ok, RequestRecord::e2e)).render());
        h.append("</div>\n");

        h.append("<h2>Over time</h2>\n<div class=\"plots\">\n");
        RunSummary.Timeline t = s.timeline();
        double[] binEnds = new double[t.inFlight().length];
        for (int i = 0; i < binEnds.length; i++) {
            binEnds[i] = (i + 1) * t.binSeconds();
        }
        h.append(new SvgChart("time-throughput", "Output throughput (per " + fmt(t.binSeconds()) + " s bin)",
                "time (s)", "tokens/s").line("output tok/s", binEnds, t.outputTokensPerSecond()).render());
        h.append(new SvgChart("time-requests", "Requests", "time (s)", "requests")
                .line("in flight", binEnds, Arrays.stream(t.inFlight()).asDoubleStream().toArray())
                .line("finished/s", binEnds, t.finishedPerSecond()).render());
        List<MetricsScraper.Sample> m = run.serverMetrics();
        double[] mt = m.stream().mapToDouble(MetricsScraper.Sample::seconds).toArray();
        h.append(new SvgChart("time-queue", "Server queue (/metrics)", "time (s)", "requests")
                .line("waiting", mt, m.stream().mapToDouble(MetricsScraper.Sample::waiting).toArray())
                .line("running", mt, m.stream().mapToDouble(MetricsScraper.Sample::running).toArray()).render());
        h.append(new SvgChart("time-kv", "Server KV-cache usage (/metrics)", "time (s)", "fraction used")
                .line("KV cache", mt, m.stream().mapToDouble(MetricsScraper.Sample::kvCacheUsage).toArray())
                .yRange(0, 1).render());
        h.append("</div>\n");
        if (run.metricsProblem() != null) {
            h.append("<p class=\"note\">No server metrics: ").append(Html.escape(run.metricsProblem())).append("</p>\n");
        }

        h.append("<h2>Per model</h2>\n<table id=\"per-adapter\"><tr><th class=\"l\">model</th><th>requests</th>"
                + "<th>failed</th><th>output tok/s</th><th>TTFT p50</th><th>TTFT p99</th><th>TPOT p50</th>"
                + "<th>TPOT p99</th><th>e2e p50</th><th>e2e p99</th></tr>\n");
        List<RunSummary.AdapterSummary> rows = s.perAdapter();
        for (RunSummary.AdapterSummary a : rows.subList(0, Math.min(ADAPTER_ROWS, rows.size()))) {
            h.append("<tr><td class=\"l\">").append(Html.escape(a.model())).append("</td><td>").append(a.requests())
                    .append("</td><td>").append(a.failed()).append("</td><td>").append(fmt(a.outputTokensPerSecond()))
                    .append("</td><td>").append(fmt(a.ttftMs().p50())).append("</td><td>").append(fmt(a.ttftMs().p99()))
                    .append("</td><td>").append(fmt(a.tpotMs().p50())).append("</td><td>").append(fmt(a.tpotMs().p99()))
                    .append("</td><td>").append(fmt(a.e2eMs().p50())).append("</td><td>").append(fmt(a.e2eMs().p99()))
                    .append("</td></tr>\n");
        }
        h.append("</table>\n");
        if (rows.size() > ADAPTER_ROWS) {
            h.append("<p class=\"note\">").append(rows.size() - ADAPTER_ROWS)
                    .append(" more models, with fewer requests each: see the JSON results.</p>\n");
        }
        return h.append("</body></html>\n").toString();
    }

    /** One line saying what the run was. */
    static String describe(RunResult run) {
        ServeBenchConfig c = run.config();
        String arrivals = switch (c.arrivals()) {
            case ArrivalProcess.OpenLoop o -> (o.burstiness() == 1 ? "Poisson" : "gamma (shape " + fmt(o.burstiness())
                    + ")") + " arrivals at " + o.schedule().describe();
            case ArrivalProcess.ClosedLoop cl -> cl.clients() + " concurrent clients";
        };
        String lengths = c.dataset() != null ? "prompts from " + c.dataset().getFileName()
                : "synthetic lengths: input " + c.inputLen() + ", output " + c.outputLen() + " tokens (±"
                + fmt(c.rangeRatio() * 100) + "%)";
        return String.format(Locale.ROOT, "%s at %s; base model %s; workload %s over %d adapters; %s; %s; "
                        + "started %s; seed %d", c.chat() ? "/v1/chat/completions" : "/v1/completions", c.baseUrl(),
                run.baseModel(), c.workload().describe(), run.adaptersAvailable(), arrivals, lengths, run.startedAt(),
                c.seed());
    }

    private static double[] ms(List<RequestRecord> rs, ToDoubleFunction<RequestRecord> f) {
        return rs.stream().mapToDouble(f).map(v -> v * 1e3).toArray();
    }

    private static void row(StringBuilder h, String name, String value) {
        h.append("<tr><td class=\"l\">").append(Html.escape(name)).append("</td><td>").append(Html.escape(value))
                .append("</td></tr>\n");
    }

    private static void latencyRow(StringBuilder h, String name, Distribution d) {
        h.append("<tr><td class=\"l\">").append(name).append("</td><td>").append(fmt(d.mean())).append("</td><td>")
                .append(fmt(d.p50())).append("</td><td>").append(fmt(d.p90())).append("</td><td>")
                .append(fmt(d.p99())).append("</td><td>").append(fmt(d.max())).append("</td><td>").append(d.count())
                .append("</td></tr>\n");
    }

    static String fmt(double v) {
        if (Double.isNaN(v)) {
            return "–";
        }
        if (Double.isInfinite(v)) {
            return "∞";
        }
        return Math.abs(v) >= 100 ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.3g", v);
    }
}
