package ai.punica.bench.serve;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Reads the server's queue and KV-cache usage from its Prometheus {@code /metrics} while a run goes on, in
 * vLLM's metric names (which Punica-J exports too): {@code vllm:num_requests_waiting},
 * {@code vllm:num_requests_running}, and {@code vllm:kv_cache_usage_perc} (vLLM ≥ 0.10; older releases call it
 * {@code vllm:gpu_cache_usage_perc}), a fraction in [0, 1]. Each is summed over its label sets (one per served
 * model name). A server without /metrics, or without these names, leaves the series empty (NaN).
 */
public final class MetricsScraper implements AutoCloseable {

    /** One scrape: seconds since the run's start; NaN for a metric the server does not export. */
    public record Sample(double seconds, double waiting, double running, double kvCacheUsage) {
    }

    static final String WAITING = "vllm:num_requests_waiting";
    static final String RUNNING = "vllm:num_requests_running";
    static final List<String> KV_USAGE = List.of("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc");

    private final HttpClient http;
    private final URI metrics;
    private final Duration interval;
    private final long originNanos;
    private final List<Sample> samples = new CopyOnWriteArrayList<>();
    private volatile String problem;
    private Thread thread;

    public MetricsScraper(HttpClient http, URI metrics, Duration interval, long originNanos) {
        this.http = http;
        this.metrics = metrics;
        this.interval = interval;
        this.originNanos = originNanos;
    }

    /** Scrapes once now; false (with {@link #problem}) when the server has no usable /metrics. */
    public boolean scrapeOnce() {
        try {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(metrics).timeout(Duration.ofSeconds(5)).GET()
                    .build(), HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() != 200) {
                problem = "GET " + metrics + " answered HTTP " + r.statusCode();
                return false;
            }
            Map<String, Double> values = parse(r.body());
            double kv = Double.NaN;
            for (String name : KV_USAGE) {
                if (values.containsKey(name)) {
                    kv = values.get(name);
                    break;
                }
            }
            Sample s = new Sample((System.nanoTime() - originNanos) / 1e9, values.getOrDefault(WAITING, Double.NaN),
                    values.getOrDefault(RUNNING, Double.NaN), kv);
            if (Double.isNaN(s.waiting()) && Double.isNaN(s.running()) && Double.isNaN(s.kvCacheUsage())) {
                problem = "GET " + metrics + " has none of " + WAITING + ", " + RUNNING + ", " + KV_USAGE;
                return false;
            }
            samples.add(s);
            return true;
        } catch (IOException | RuntimeException e) {
            problem = "GET " + metrics + " failed: " + e.getMessage();
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** Scrapes every interval on a virtual thread until {@link #close}, if the first scrape works. */
    public MetricsScraper start() {
        if (!scrapeOnce()) {
            return this;
        }
        thread = Thread.ofVirtual().name("metrics-scraper").start(() -> {
            while (!Thread.currentThread().isInterrupted()) {
                try {
                    Thread.sleep(interval);
                } catch (InterruptedException e) {
                    return;
                }
                scrapeOnce();
            }
        });
        return this;
    }

    @Override
    public void close() {
        if (thread != null) {
            thread.interrupt();
            try {
                thread.join(Duration.ofSeconds(10));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            scrapeOnce(); // the state after the last request
        }
    }

    public List<Sample> samples() {
        return List.copyOf(samples);
    }

    /** Why there are no samples (null when scraping worked). */
    public String problem() {
        return samples.isEmpty() ? problem : null;
    }

    /**
     * The sum over label sets of each sample in Prometheus text format ({@code name{labels} value [timestamp]});
     * comments and unparsable lines are skipped.
     */
    static Map<String, Double> parse(String text) {
        Map<String, Double> out = new HashMap<>();
        for (String line : text.split("\n")) {
            String l = line.strip();
            if (l.isEmpty() || l.startsWith("#")) {
                continue;
            }
            int brace = l.indexOf('{');
            int space;
            String name;
            if (brace >= 0 && brace < l.indexOf(' ')) {
                name = l.substring(0, brace);
                int close = l.lastIndexOf('}');
                space = close < 0 ? -1 : close + 1;
            } else {
                space = l.indexOf(' ');
                name = space < 0 ? l : l.substring(0, space);
            }
            if (space < 0 || space >= l.length()) {
                continue;
            }
            try {
                double v = Double.parseDouble(l.substring(space).strip().split("\\s+")[0]);
                out.merge(name, v, Double::sum);
            } catch (NumberFormatException e) {
                // NaN/Inf spelled otherwise, or a malformed line: not one of ours
            }
        }
        return out;
    }
}
