package ai.punica.bench.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.punica.Fixtures;
import ai.punica.bench.serve.Distribution;
import ai.punica.bench.serve.ResultsJson;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.server.PunicaServer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code punica bench serve} against the real server (Helidon, the engine on the CPU backend, the bundled demo
 * model and its four adapters) on 127.0.0.1: one short sweep (uniform over the adapters and base-only, Poisson
 * at 25 req/s, prompts of exactly 20 tokens, 6 output tokens), then its JSON and HTML are checked, the HTML in a
 * headless Chromium when one is installed.
 */
class ServeBenchAgainstDemoServerTest {
    private static final int REQUESTS = 32;
    private static final List<String> ADAPTERS = List.of("upper", "reverse", "translate", "sort");

    @TempDir
    static Path out;

    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static int exitCode;
    private static String stdout;
    private static String stderr;
    private static int errorRunExitCode;

    @BeforeAll
    static void runTheBenchmark() {
        Map<String, Path> adapters = new LinkedHashMap<>();
        ADAPTERS.forEach(a -> adapters.put(a, Fixtures.adapter(a)));
        runtime = new EngineBuilder().model(Fixtures.model()).modelName("demo").backend("cpu")
                .config(new EngineConfig(256, 64, 1024, 16, 32L << 20, 0, 4, 32, 256L << 20)).adapters(adapters)
                .build();
        server = PunicaServer.builder().runtime(runtime).host("127.0.0.1").port(0).build().start();
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        try {
            System.setOut(new PrintStream(o, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(e, true, StandardCharsets.UTF_8));
            exitCode = new CommandLine(new BenchCommand()).execute("serve", "--base-url", server.baseUrl() + "/v1",
                    "--workloads", "uniform,base", "--rates", "25", "--num-requests", String.valueOf(REQUESTS),
                    "--input-len", "20", "--output-len", "6", "--tokenizer", Fixtures.model().toString(),
                    "--metrics-interval", "0.05", "--warmup", "4", "--slo-ttft-ms", "1e9", "--slo-tpot-ms", "1e9",
                    "--seed", "3", "--out", out.toString());
            // Chat, four closed-loop clients, half the requests for a model the server does not have.
            errorRunExitCode = new CommandLine(new BenchCommand()).execute("serve", "--base-url",
                    server.baseUrl() + "/v1", "--endpoint", "chat", "--adapters", "upper,no-such-adapter",
                    "--workloads", "distinct",
                    "--concurrency", "4", "--num-requests", "16", "--input-len", "12", "--output-len", "4",
                    "--no-progress", "--out", out.resolve("errors").toString());
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
        stdout = o.toString(StandardCharsets.UTF_8);
        stderr = e.toString(StandardCharsets.UTF_8);
    }

    @AfterAll
    static void stop() {
        if (server != null) {
            server.stop(Duration.ofSeconds(5));
        }
        if (runtime != null) {
            runtime.close();
        }
    }

    private static JsonNode run(String name) throws IOException {
        assertThat(exitCode).as("exit code; stderr:\n%s", stderr).isZero();
        return new ObjectMapper().readTree(out.resolve(name + ".json").toFile());
    }

    @Test
    void everyRequestCompletesWithTheAskedLengths() throws IOException {
        for (String name : List.of("uniform-4_rate25", "base_rate25")) {
            JsonNode run = run(name);
            JsonNode s = run.get("summary");
            assertThat(s.get("requests").asInt()).isEqualTo(REQUESTS);
            assertThat(s.get("completed").asInt()).isEqualTo(REQUESTS);
            assertThat(s.get("failed").asInt()).isZero();
            assertThat(run.get("requests")).hasSize(REQUESTS);
            for (JsonNode r : run.get("requests")) {
                assertThat(r.get("prompt_tokens").asInt()).as("usage.prompt_tokens: the prompt was made to be exact")
                        .isEqualTo(20);
                assertThat(r.get("output_tokens").asInt()).as("ignore_eos: max_tokens tokens").isEqualTo(6);
                // Punica-J coalesces tokens a slow reader has not taken, and sends no chunk for special tokens.
                assertThat(r.get("chunk_s").size()).as("streamed chunks").isBetween(1, 6);
            }
            assertThat(s.get("output_tokens").asLong()).isEqualTo(REQUESTS * 6L);
            assertThat(s.get("prompt_tokens").asLong()).isEqualTo(REQUESTS * 20L);
            assertThat(s.get("output_throughput").asDouble()).isCloseTo(REQUESTS * 6 / s.get("duration_s").asDouble(),
                    within(0.01 * s.get("output_throughput").asDouble()));
        }
        JsonNode base = run("base_rate25");
        assertThat(base.get("per_adapter")).hasSize(1);
        assertThat(base.get("per_adapter").get(0).get("model").asText()).isEqualTo("demo");
        assertThat(stdout).contains("| run | workload |").contains("uniform-4_rate25").contains("base_rate25");
        assertThat(stderr).as("the progress bar").contains("32/32 requests");
        assertThat(Files.readString(out.resolve("index.html"))).contains("<a href=\"uniform-4_rate25.html\">",
                "<a href=\"base_rate25.html\">");
        assertThat(Files.readAllLines(out.resolve("summary.csv"))).hasSize(3).first().asString()
                .startsWith("run,workload,arrivals,requests,failed,req/s,output tok/s");
    }

    @Test
    void everyPercentileIsComputedFromTheRecordedSamples() throws IOException {
        JsonNode run = run("uniform-4_rate25");
        List<JsonNode> requests = StreamSupport.stream(run.get("requests").spliterator(), false).toList();
        for (String latency : List.of("ttft_ms", "tpot_ms", "e2e_ms")) {
            double[] samples = requests.stream().mapToDouble(r -> r.get(latency).asDouble()).sorted().toArray();
            assertDistribution(run.get("summary").get(latency), samples, latency);
        }
        // Inter-token latencies: the gaps of every request's chunk times.
        List<Double> gaps = new ArrayList<>();
        for (JsonNode r : requests) {
            JsonNode c = r.get("chunk_s");
            for (int i = 1; i < c.size(); i++) {
                gaps.add((c.get(i).asDouble() - c.get(i - 1).asDouble()) * 1e3);
            }
        }
        assertDistribution(run.get("summary").get("itl_ms"), gaps.stream().mapToDouble(Double::doubleValue).sorted()
                .toArray(), "itl_ms");
        // Each request's own figures from its times: TTFT = first chunk − sent, TPOT = (end − first) / (n − 1).
        for (JsonNode r : requests) {
            double sent = r.get("sent_s").asDouble();
            double first = r.get("chunk_s").get(0).asDouble();
            double end = r.get("end_s").asDouble();
            assertThat(r.get("ttft_ms").asDouble()).isCloseTo((first - sent) * 1e3, within(0.01));
            assertThat(r.get("tpot_ms").asDouble()).isCloseTo((end - first) * 1e3 / 5, within(0.01));
            assertThat(r.get("e2e_ms").asDouble()).isCloseTo((end - sent) * 1e3, within(0.01));
        }
        // Per adapter: the uniform workload drew from all four, and the rows add up to the run.
        JsonNode per = run.get("per_adapter");
        assertThat(StreamSupport.stream(per.spliterator(), false).map(a -> a.get("model").asText()))
                .containsExactlyInAnyOrderElementsOf(ADAPTERS);
        Map<String, Integer> counted = new HashMap<>();
        requests.forEach(r -> counted.merge(r.get("model").asText(), 1, Integer::sum));
        for (JsonNode a : per) {
            assertThat(a.get("requests").asInt()).isEqualTo(counted.get(a.get("model").asText()));
            double[] ttft = requests.stream().filter(r -> r.get("model").asText().equals(a.get("model").asText()))
                    .mapToDouble(r -> r.get("ttft_ms").asDouble()).sorted().toArray();
            assertDistribution(a.get("ttft_ms"), ttft, "ttft_ms of " + a.get("model"));
        }
        JsonNode goodput = run.get("summary").get("goodput");
        assertThat(goodput.get("requests_meeting_slo").asInt()).as("a lax SLO every request meets").isEqualTo(REQUESTS);
    }

    @Test
    void chatFailedRequestsAreCountedByKindAndAClosedLoopKeepsItsClientsBusy() throws IOException {
        assertThat(errorRunExitCode).as("some requests completed; stderr:\n%s", stderr).isZero();
        JsonNode run = new ObjectMapper().readTree(out.resolve("errors").resolve("distinct_c4.json").toFile());
        JsonNode s = run.get("summary");
        assertThat(s.get("requests").asInt()).isEqualTo(16);
        assertThat(s.get("failed").asInt()).as("distinct alternates the two models").isEqualTo(8);
        assertThat(s.get("errors").get("http_404").asInt()).isEqualTo(8);
        assertThat(run.get("config").get("arrivals").get("type").asText()).isEqualTo("concurrent");
        assertThat(run.get("config").get("endpoint").asText()).isEqualTo("/v1/chat/completions");
        assertThat(run.get("config").get("token_counter").asText()).as("the server's /tokenize counts the prompts")
                .isEqualTo("server:/tokenize");
        List<double[]> spans = new ArrayList<>();
        for (JsonNode r : run.get("requests")) {
            boolean missing = r.get("model").asText().equals("no-such-adapter");
            assertThat(r.get("error_kind").isNull()).isEqualTo(!missing);
            if (missing) {
                assertThat(r.get("error").asText()).contains("no-such-adapter").contains("does not exist");
            } else {
                assertThat(r.get("output_tokens").asInt()).as("chat stream's usage").isEqualTo(4);
                assertThat(r.get("prompt_tokens").asInt()).as("the chat template adds tokens").isGreaterThan(12);
                assertThat(r.get("chunk_s").size()).isBetween(1, 4);
            }
            spans.add(new double[] {r.get("sent_s").asDouble(), r.get("end_s").asDouble()});
        }
        // Never more than four in flight: at each send, count the requests sent before and not yet ended.
        for (double[] a : spans) {
            long inFlight = spans.stream().filter(b -> b[0] <= a[0] && b[1] > a[0]).count();
            assertThat(inFlight).isBetween(1L, 4L);
        }
        JsonNode per = run.get("per_adapter");
        assertThat(per).hasSize(2);
        for (JsonNode a : per) {
            boolean missing = a.get("model").asText().equals("no-such-adapter");
            assertThat(a.get("failed").asInt()).isEqualTo(missing ? 8 : 0);
            assertThat(a.get("ttft_ms").get("p50").isNull()).as("no latency for failures").isEqualTo(missing);
        }
    }

    /**
     * {@code d} against the percentiles of {@code sorted}, within 2 µs: the JSON holds times to the microsecond,
     * so a latency recomputed from two of them is off by up to that much.
     */
    private static void assertDistribution(JsonNode d, double[] sorted, String what) {
        assertThat(d.get("count").asInt()).as(what).isEqualTo(sorted.length);
        // Nearest ranks by hand, interpolated: (n − 1)·p/100 (NumPy's linear method).
        for (double p : new double[] {50, 90, 95, 99}) {
            double h = (sorted.length - 1) * p / 100;
            int lo = (int) h;
            double expected = lo + 1 < sorted.length ? sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo])
                    : sorted[lo];
            assertThat(d.get("p" + (int) p).asDouble()).as("%s p%s", what, p).isCloseTo(expected, within(2e-3));
            assertThat(Distribution.percentile(sorted, p)).isCloseTo(expected, within(1e-9));
        }
        assertThat(d.get("min").asDouble()).isCloseTo(sorted[0], within(2e-3));
        assertThat(d.get("max").asDouble()).isCloseTo(sorted[sorted.length - 1], within(2e-3));
        assertThat(d.get("mean").asDouble()).isCloseTo(java.util.Arrays.stream(sorted).average().orElseThrow(),
                within(2e-3));
    }

    @Test
    void theJsonFollowsItsSchema() throws IOException {
        JsonNode run = run("uniform-4_rate25");
        assertThat(run.get("schema").asText()).isEqualTo(ResultsJson.SCHEMA);
        assertThat(fieldNames(run)).containsExactly("schema", "label", "started_at", "config", "summary",
                "per_adapter", "timeline", "server_metrics", "requests");
        assertThat(fieldNames(run.get("config"))).containsExactly("base_url", "endpoint", "base_model", "workload",
                "adapters_available", "arrivals", "lengths", "token_counter", "ignore_eos", "temperature", "seed",
                "warmup_requests");
        assertThat(run.get("config").get("arrivals").get("type").asText()).isEqualTo("poisson");
        assertThat(run.get("config").get("workload").asText()).isEqualTo("uniform:4");
        assertThat(fieldNames(run.get("summary"))).containsExactly("requests", "completed", "failed", "errors",
                "duration_s", "prompt_tokens", "output_tokens", "request_throughput", "output_throughput",
                "total_token_throughput", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "goodput");
        assertThat(fieldNames(run.get("summary").get("ttft_ms"))).containsExactly("count", "max", "mean", "min",
                "p50", "p90", "p95", "p99");
        assertThat(fieldNames(run.get("requests").get(0))).containsExactly("index", "model", "scheduled_s", "sent_s",
                "end_s", "ttft_ms", "tpot_ms", "e2e_ms", "prompt_tokens", "output_tokens", "chunk_s", "error_kind",
                "error");
        JsonNode timeline = run.get("timeline");
        assertThat(timeline.get("output_throughput").size()).isEqualTo(timeline.get("in_flight").size())
                .isEqualTo(timeline.get("finished_per_s").size()).isPositive();
        double binned = 0;
        for (JsonNode v : timeline.get("output_throughput")) {
            binned += v.asDouble() * timeline.get("bin_s").asDouble();
        }
        assertThat(binned).as("the timeline's bins hold every output token").isCloseTo(REQUESTS * 6, within(0.5));
        // The server's queue and KV usage were scraped from its /metrics (Punica-J exports vLLM's names).
        JsonNode metrics = run.get("server_metrics");
        assertThat(metrics.get("problem").isNull()).as("problem: %s", metrics.get("problem")).isTrue();
        assertThat(metrics.get("samples").size()).isGreaterThan(3);
        double peakRunning = 0;
        double peakKv = 0;
        for (JsonNode m : metrics.get("samples")) {
            assertThat(fieldNames(m)).containsExactly("t_s", "waiting", "running", "kv_cache_usage");
            peakRunning = Math.max(peakRunning, m.get("running").asDouble());
            peakKv = Math.max(peakKv, m.get("kv_cache_usage").asDouble());
        }
        assertThat(peakRunning).as("requests were running while scraped").isPositive();
        assertThat(peakKv).isPositive().isLessThanOrEqualTo(1);
    }

    private static List<String> fieldNames(JsonNode node) {
        List<String> names = new ArrayList<>();
        node.fieldNames().forEachRemaining(names::add);
        return names;
    }

    @Test
    void theHtmlReportIsSelfContainedAndChromiumRendersItsPlots() throws Exception {
        assertThat(exitCode).as("stderr:\n%s", stderr).isZero();
        Path html = out.resolve("uniform-4_rate25.html");
        String text = Files.readString(html);
        assertThat(text).contains("<svg class=\"plot\" id=\"cdf-ttft\"", "id=\"cdf-tpot\"", "id=\"cdf-itl\"",
                "id=\"cdf-e2e\"", "id=\"time-throughput\"", "id=\"time-queue\"", "id=\"time-kv\"");
        assertThat(text).as("nothing fetched from the network").doesNotContain("<script", "<link", "src=\"http",
                "url(");
        Path chromium = Chromium.find();
        Assumptions.assumeTrue(chromium != null, "chromium is not installed, so the report's rendering is not "
                + "checked; install it with: apt-get update && apt-get install -y chromium");
        String dom = Chromium.dumpDom(chromium, html);
        for (String id : List.of("cdf-ttft", "cdf-tpot", "cdf-itl", "cdf-e2e", "time-throughput", "time-requests",
                "time-queue", "time-kv")) {
            assertThat(dom).as("plot %s in the rendered DOM", id).containsPattern("<svg[^>]*id=\"" + id + "\"");
        }
        assertThat(countOf(dom, "<polyline class=\"series\"")).as("a line per series").isGreaterThanOrEqualTo(10);
        assertThat(dom).doesNotContain("no data");
        // -Dpunica.bench.screenshot=/abs/path.png keeps a picture of the report (the test JVM runs in bench/).
        String screenshot = System.getProperty("punica.bench.screenshot");
        if (screenshot != null) {
            Path png = Path.of(screenshot).toAbsolutePath();
            Chromium.screenshot(chromium, html, png);
            assertThat(Files.readAllBytes(png)).startsWith((byte) 0x89, (byte) 'P', (byte) 'N', (byte) 'G');
        }
    }

    private static int countOf(String s, String needle) {
        int n = 0;
        for (int i = s.indexOf(needle); i >= 0; i = s.indexOf(needle, i + 1)) {
            n++;
        }
        return n;
    }

    /** The Debian chromium package, headless, with no network and a throw-away profile. */
    static final class Chromium {
        private Chromium() {
        }

        static Path find() {
            for (String p : List.of("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")) {
                if (Files.isExecutable(Path.of(p))) {
                    return Path.of(p);
                }
            }
            return null;
        }

        static String dumpDom(Path chromium, Path html) throws IOException, InterruptedException {
            return run(chromium, html, "--dump-dom");
        }

        static void screenshot(Path chromium, Path html, Path png) throws IOException, InterruptedException {
            run(chromium, html, "--screenshot=" + png, "--window-size=1200,1900", "--hide-scrollbars");
        }

        private static String run(Path chromium, Path html, String... args) throws IOException, InterruptedException {
            Path profile = Files.createTempDirectory("chromium-profile");
            List<String> cmd = new ArrayList<>(List.of(chromium.toString(), "--headless", "--no-sandbox",
                    "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--user-data-dir=" + profile));
            cmd.addAll(List.of(args));
            cmd.add(html.toUri().toString());
            Path log = Files.createTempFile("chromium", ".log");
            Process p = new ProcessBuilder(cmd).redirectError(log.toFile()).start();
            byte[] stdout = p.getInputStream().readAllBytes();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("chromium did not finish in 60 s");
            }
            assertThat(p.exitValue()).as("chromium exit code; stderr:\n%s", Files.readString(log)).isZero();
            return new String(stdout, StandardCharsets.UTF_8);
        }
    }
}
