package ai.punica.bench.serve;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.URI;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class MetricsAndReportTest {
    @Test
    void prometheusTextIsSummedOverLabelSetsInEitherKvMetricName() {
        String vllmOld = """
                # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
                # TYPE vllm:num_requests_waiting gauge
                vllm:num_requests_waiting{model_name="llama"} 3.0
                vllm:num_requests_waiting{model_name="other, with space"} 2.0
                vllm:num_requests_running{model_name="llama"} 7.0 1733212800000
                vllm:gpu_cache_usage_perc{model_name="llama"} 0.25
                vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="llama"} 12
                garbage line
                """;
        Map<String, Double> values = MetricsScraper.parse(vllmOld);
        assertThat(values).containsEntry("vllm:num_requests_waiting", 5.0)
                .containsEntry("vllm:num_requests_running", 7.0).containsEntry("vllm:gpu_cache_usage_perc", 0.25)
                .containsEntry("vllm:e2e_request_latency_seconds_bucket", 12.0);
        assertThat(MetricsScraper.KV_USAGE).containsExactly("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc");
    }

    @Test
    void aRunWithoutServerMetricsSaysWhyAndStillPlotsItsOwnFigures() {
        List<RequestRecord> records = List.of(
                new RequestRecord(0, "a", 0, 0.0, new double[] {0.10, 0.15, 0.30}, 0.30, 8, 3, null, null),
                new RequestRecord(1, "b", 0.05, 0.05, new double[] {0.20, 0.40}, 0.45, 8, 4, null, null),
                new RequestRecord(2, "a", 0.1, 0.1, new double[0], 0.11, -1, 0, "http_429", "queue full"));
        RunSummary summary = RunSummary.of(records, new RunSummary.Slo(120, 100));
        assertThat(summary.completed()).isEqualTo(2);
        assertThat(summary.errors()).containsExactly(Map.entry("http_429", 1));
        assertThat(summary.ttftMs().p50()).isCloseTo(125, org.assertj.core.data.Offset.offset(1e-9));
        assertThat(summary.tpotMs().min()).as("(0.45 − 0.20) / 3 s").isCloseTo(250 / 3.0,
                org.assertj.core.data.Offset.offset(1e-9));
        assertThat(summary.tpotMs().max()).as("(0.30 − 0.10) / 2 s").isCloseTo(100, org.assertj.core.data.Offset.offset(1e-9));
        assertThat(summary.goodRequests()).as("TTFT 100 ms, TPOT 100 ms meets; TTFT 150 ms does not").isEqualTo(1);
        assertThat(summary.durationSeconds()).isCloseTo(0.45, org.assertj.core.data.Offset.offset(1e-12));
        ServeBenchConfig config = new ServeBenchConfig(URI.create("http://127.0.0.1:1/v1"), null, false, true, 0,
                Duration.ofSeconds(1), "base", List.of("a", "b"), new AdapterPopularity.Uniform(2),
                new ArrivalProcess.ClosedLoop(2, 3), null, 8, 4, 0, null, summary.slo(), 1, Duration.ofSeconds(1), 0,
                false);
        RunResult run = new RunResult("no-metrics", Instant.EPOCH, config, "base", 2, "none", records, summary,
                List.of(), "GET http://127.0.0.1:1/metrics answered HTTP 404");
        String html = HtmlReport.render(run);
        assertThat(html).contains("No server metrics: GET http://127.0.0.1:1/metrics answered HTTP 404");
        assertThat(html).containsPattern("id=\"time-queue\"[\\s\\S]*?no data");
        assertThat(html).containsPattern("id=\"cdf-ttft\"[^<]*>\\s*<text[^>]*>Time to first token");
        assertThat(ResultsJson.toJson(run).get("server_metrics").get("problem").asText()).contains("HTTP 404");
        assertThat(ResultsJson.toJson(run).get("requests").get(2).get("ttft_ms").isNull()).isTrue();
        assertThat(HtmlReport.render(run)).doesNotContain("<script");
    }

    @Test
    void aCdfPlotRisesStepwiseFromTheSmallestSampleToOne() {
        double[] samples = {30, 10, 20, 20, Double.NaN, 40};
        String svg = new SvgChart("cdf", "t", "x", "y").cdf("s", samples).render();
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("points=\"([^\"]+)\"").matcher(svg);
        assertThat(m.find()).isTrue();
        String[] points = m.group(1).split(" ");
        double lastX = Double.NEGATIVE_INFINITY;
        double lastY = Double.POSITIVE_INFINITY; // SVG y grows downwards
        for (String p : points) {
            double x = Double.parseDouble(p.split(",")[0]);
            double y = Double.parseDouble(p.split(",")[1]);
            assertThat(x).isGreaterThanOrEqualTo(lastX);
            assertThat(y).isLessThanOrEqualTo(lastY);
            lastX = x;
            lastY = y;
        }
        // 5 samples: 5 points and 4 horizontal steps; the last at the top of the plot (fraction 1).
        assertThat(points).hasSize(9);
        double top = Double.parseDouble(points[points.length - 1].split(",")[1]);
        double bottomOfFirst = Double.parseDouble(points[0].split(",")[1]);
        assertThat(top).isLessThan(bottomOfFirst);
        assertThat(svg).contains(">1.0<").contains(">0<");
    }

    @Test
    void tickLabelsCarryTheDecimalsTheirStepNeeds() {
        assertThat(SvgChart.ticks(50_000, 51_000)).contains(50_000, 50_200, 51_000);
        assertThat(SvgChart.label(50_200, 200)).isEqualTo("50.2k");
        assertThat(SvgChart.label(0.25, 0.05)).isEqualTo("0.25");
        assertThat(SvgChart.label(1200, 200)).isEqualTo("1200");
    }
}
