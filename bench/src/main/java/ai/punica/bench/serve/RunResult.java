package ai.punica.bench.serve;

import java.time.Instant;
import java.util.List;

/**
 * One finished run: what was asked, what each request did, the figures, and the server's metrics over time.
 *
 * @param metricsProblem  why there are no server metrics (null when they were scraped)
 */
public record RunResult(String label, Instant startedAt, ServeBenchConfig config, String baseModel,
                        int adaptersAvailable, String tokenCounter, List<RequestRecord> requests, RunSummary summary,
                        List<MetricsScraper.Sample> serverMetrics, String metricsProblem) {
}
