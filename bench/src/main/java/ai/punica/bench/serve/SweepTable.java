package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.ToDoubleFunction;

/** One row per run: throughput, latency percentiles, goodput and the server's peak queue and KV usage. */
public final class SweepTable {
    private static final String[] HEADER = {"run", "workload", "arrivals", "requests", "failed", "req/s",
        "output tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms", "ITL p99 ms", "e2e p50 ms",
        "goodput req/s", "peak waiting", "peak running", "peak KV"};

    private SweepTable() {
    }

    private static List<String> cells(RunResult r) {
        RunSummary s = r.summary();
        List<String> c = new ArrayList<>();
        c.add(r.label());
        c.add(r.config().workload().describe());
        c.add(switch (r.config().arrivals()) {
            case ArrivalProcess.OpenLoop o -> o.schedule().describe() + (o.burstiness() == 1 ? "" : " γ"
                    + number(o.burstiness()));
            case ArrivalProcess.ClosedLoop cl -> cl.clients() + " clients";
        });
        c.add(String.valueOf(s.requests()));
        c.add(String.valueOf(s.failed()));
        c.add(fixed(s.requestsPerSecond(), 2));
        c.add(fixed(s.outputTokensPerSecond(), 1));
        c.add(fixed(s.ttftMs().p50(), 1));
        c.add(fixed(s.ttftMs().p99(), 1));
        c.add(fixed(s.tpotMs().p50(), 2));
        c.add(fixed(s.tpotMs().p99(), 2));
        c.add(fixed(s.itlMs().p99(), 2));
        c.add(fixed(s.e2eMs().p50(), 1));
        c.add(fixed(s.goodputRequestsPerSecond(), 2));
        c.add(fixed(peak(r, MetricsScraper.Sample::waiting), 0));
        c.add(fixed(peak(r, MetricsScraper.Sample::running), 0));
        c.add(fixed(peak(r, MetricsScraper.Sample::kvCacheUsage), 3));
        return c;
    }

    private static double peak(RunResult r, ToDoubleFunction<MetricsScraper.Sample> f) {
        return r.serverMetrics().stream().mapToDouble(f).filter(v -> !Double.isNaN(v)).max().orElse(Double.NaN);
    }

    /** One line for the console as a run finishes. */
    public static String line(RunResult r) {
        List<String> c = cells(r);
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < HEADER.length; i++) {
            b.append(i == 0 ? "" : ", ").append(i == 0 ? "" : HEADER[i] + " ").append(c.get(i));
        }
        return b.toString();
    }

    public static String markdown(List<RunResult> runs) {
        StringBuilder b = new StringBuilder("| ").append(String.join(" | ", HEADER)).append(" |\n|");
        b.append("---|".repeat(HEADER.length)).append('\n');
        for (RunResult r : runs) {
            b.append("| ").append(String.join(" | ", cells(r))).append(" |\n");
        }
        return b.toString();
    }

    /** An index page: the table, each run linking to its RUN.html in the same directory. */
    public static String html(List<RunResult> runs) {
        StringBuilder b = new StringBuilder("""
                <!DOCTYPE html>
                <html lang="en"><head><meta charset="utf-8"><title>punica bench serve</title>
                <style>body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; } table { border-collapse: collapse; }
                td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; } th { background: #f2f2f2; }
                td:nth-child(-n+3) { text-align: left; }</style></head><body>
                <h1>punica bench serve</h1>
                <table id="runs"><tr>""");
        for (String h : HEADER) {
            b.append("<th>").append(Html.escape(h)).append("</th>");
        }
        b.append("</tr>\n");
        for (RunResult r : runs) {
            List<String> c = cells(r);
            b.append("<tr><td><a href=\"").append(Html.escape(r.label())).append(".html\">")
                    .append(Html.escape(c.getFirst())).append("</a></td>");
            for (String v : c.subList(1, c.size())) {
                b.append("<td>").append(Html.escape(v)).append("</td>");
            }
            b.append("</tr>\n");
        }
        return b.append("</table>\n</body></html>\n").toString();
    }

    public static String csv(List<RunResult> runs) {
        StringBuilder b = new StringBuilder(String.join(",", HEADER)).append('\n');
        for (RunResult r : runs) {
            b.append(String.join(",", cells(r).stream().map(v -> v.contains(",") ? "\"" + v + "\"" : v).toList()))
                    .append('\n');
        }
        return b.toString();
    }

    /** 2 → "2", 2.5 → "2.5". */
    public static String number(double v) {
        return v == Math.rint(v) ? String.valueOf((long) v) : String.valueOf(v);
    }

    private static String fixed(double v, int digits) {
        return Double.isNaN(v) ? "" : String.format(Locale.ROOT, "%." + digits + "f", v);
    }
}
