package ai.punica.bench.serve;

import ai.punica.tokenizer.Tokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One run of the serving benchmark against an OpenAI-compatible server:
 * <ol>
 *   <li>the models: the base model and the adapters from {@code /v1/models} (unless given);</li>
 *   <li>the requests, all decided before the first is sent: arrival times, each one's model (the workload),
 *       its prompt and output length (dataset or synthetic), from one seed;</li>
 *   <li>warm-up requests, not recorded;</li>
 *   <li>the timed run: open loop (each request sent at its arrival time on a virtual thread, whether or not
 *       earlier ones finished) or closed loop (N clients), with the server's /metrics scraped meanwhile;</li>
 *   <li>the {@link RunSummary}.</li>
 * </ol>
 */
public final class ServeBenchmark {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final HttpClient http;
    private final PrintStream log;

    public ServeBenchmark(HttpClient http, PrintStream log) {
        this.http = http;
        this.log = log;
    }

    /** The server's models: index 0 the base model, then the adapters (models with a parent). */
    public List<String> listModels(ServeBenchConfig config) throws IOException, InterruptedException {
        String base = config.baseUrl().toString().replaceAll("/+$", "");
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + "/models"))
                .timeout(Duration.ofSeconds(30)).GET();
        if (config.apiKey() != null) {
            b.header("Authorization", "Bearer " + config.apiKey());
        }
        HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            throw new IllegalStateException("GET " + base + "/models answered HTTP " + r.statusCode() + ": "
                    + r.body().lines().findFirst().orElse(""));
        }
        List<String> bases = new ArrayList<>();
        List<String> adapters = new ArrayList<>();
        for (JsonNode m : JSON.readTree(r.body()).path("data")) {
            String id = m.path("id").asText();
            boolean adapter = m.hasNonNull("parent") && !m.path("parent").asText().equals(id);
            (adapter ? adapters : bases).add(id);
        }
        if (bases.isEmpty()) {
            throw new IllegalStateException("GET " + base + "/models lists no base model; pass --base-model");
        }
        List<String> out = new ArrayList<>();
        out.add(bases.getFirst());
        out.addAll(adapters);
        return out;
    }

    /** The requests of a run, from {@code config.seed()}. */
    public List<RequestSpec> plan(ServeBenchConfig config, String baseModel, List<String> adapters,
                                  TokenCounter counter) {
        SplittableRandom random = new SplittableRandom(config.seed());
        double[] arrivals = switch (config.arrivals()) {
            case ArrivalProcess.OpenLoop open -> open.arrivalTimes(random.split());
            case ArrivalProcess.ClosedLoop closed -> {
                double[] none = new double[closed.requests()];
                Arrays.fill(none, Double.NaN);
                yield none;
            }
        };
        int n = arrivals.length;
        List<String> models = config.workload().assign(n, adapters, baseModel, random.split());
        List<PromptSample> samples = samples(config, counter, n, random.split());
        List<RequestSpec> specs = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            specs.add(new RequestSpec(i, arrivals[i], models.get(i), samples.get(i)));
        }
        return specs;
    }

    private List<PromptSample> samples(ServeBenchConfig config, TokenCounter counter, int n, SplittableRandom random) {
        if (config.dataset() != null) {
            List<PromptSample> all = new ArrayList<>(Dataset.load(config.dataset(), counter == null ? null
                    : counter::count, config.outputLen()));
            // A seeded shuffle, then as many as needed, cycling when the file is shorter than the run.
            for (int i = all.size() - 1; i > 0; i--) {
                Collections.swap(all, i, random.nextInt(i + 1));
            }
            List<PromptSample> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                out.add(all.get(i % all.size()));
            }
            return out;
        }
        PromptMaker maker = new PromptMaker(counter);
        List<PromptSample> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(maker.make(length(config.inputLen(), config.rangeRatio(), random),
                    length(config.outputLen(), config.rangeRatio(), random), random));
        }
        return out;
    }

    /** Uniform integer in [len·(1 − r), len·(1 + r)], at least 1. */
    static int length(int len, double ratio, SplittableRandom random) {
        int lo = Math.max(1, (int) Math.round(len * (1 - ratio)));
        int hi = Math.max(lo, (int) Math.round(len * (1 + ratio)));
        return lo == hi ? lo : lo + random.nextInt(hi - lo + 1);
    }

    /** The counter of prompt tokens: the tokenizer of config.tokenizer(), else the server's /tokenize, else none. */
    public TokenCounter tokenCounter(ServeBenchConfig config, String baseModel) {
        if (config.tokenizer() != null) {
            return new TokenCounter.Local(Tokenizer.load(config.tokenizer()));
        }
        return TokenCounter.Server.probe(http, config.serverRoot(), baseModel, config.apiKey()).orElse(null);
    }

    /** Runs {@code specs} (after the warm-up) and summarises them. */
    public RunResult run(String label, ServeBenchConfig config, String baseModel, int adaptersAvailable,
                         TokenCounter counter, List<RequestSpec> specs) throws InterruptedException {
        OpenAiStreamClient client = new OpenAiStreamClient(http, new OpenAiStreamClient.Options(config.baseUrl(),
                config.apiKey(), config.chat(), config.ignoreEos(), config.temperature(), config.requestTimeout()));
        if (config.warmupRequests() > 0 && !specs.isEmpty()) {
            List<RequestSpec> warm = new ArrayList<>();
            for (int i = 0; i < config.warmupRequests(); i++) {
                RequestSpec s = specs.get(i % specs.size());
                warm.add(new RequestSpec(i, 0, s.model(), s.sample()));
            }
            long origin = System.nanoTime();
            List<RequestRecord> w = runAll(client, warm, new ArrivalProcess.ClosedLoop(warm.size(), warm.size()),
                    origin, null);
            long failed = w.stream().filter(r -> !r.ok()).count();
            log.printf("%s: warm-up: %d requests, %d failed%s%n", label, w.size(), failed, failed == 0 ? ""
                    : " (first: " + w.stream().filter(r -> !r.ok()).findFirst().map(r -> r.errorKind() + " "
                    + r.errorMessage()).orElse("") + ")");
        }
        Instant started = Instant.now();
        long origin = System.nanoTime();
        List<RequestRecord> records;
        MetricsScraper scraper = new MetricsScraper(http, config.serverRoot().resolve("/metrics"),
                config.metricsInterval(), origin);
        try (scraper; ProgressBar bar = new ProgressBar(log, label, specs.size(), config.progress())) {
            scraper.start();
            records = runAll(client, specs, config.arrivals(), origin, bar);
        }
        RunSummary summary = RunSummary.of(records, config.slo());
        return new RunResult(label, started, config, baseModel, adaptersAvailable, counter == null ? "none"
                : counter instanceof TokenCounter.Local ? "local:" + config.tokenizer() : "server:/tokenize",
                records, summary, scraper.samples(), scraper.problem());
    }

    private static List<RequestRecord> runAll(OpenAiStreamClient client, List<RequestSpec> specs,
                                              ArrivalProcess arrivals, long origin, ProgressBar bar)
            throws InterruptedException {
        RequestRecord[] out = new RequestRecord[specs.size()];
        try (ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor()) {
            switch (arrivals) {
                case ArrivalProcess.OpenLoop open -> {
                    for (RequestSpec spec : specs) {
                        long due = origin + (long) (spec.arrivalSeconds() * 1e9);
                        long wait = due - System.nanoTime();
                        if (wait > 0) {
                            Thread.sleep(Duration.ofNanos(wait));
                        }
                        threads.submit(() -> record(out, client.send(spec, origin), bar));
                    }
                }
                case ArrivalProcess.ClosedLoop closed -> {
                    AtomicInteger next = new AtomicInteger();
                    for (int c = 0; c < closed.clients(); c++) {
                        threads.submit(() -> {
                            for (int i = next.getAndIncrement(); i < specs.size(); i = next.getAndIncrement()) {
                                record(out, client.send(specs.get(i), origin), bar);
                            }
                        });
                    }
                }
            }
        }
        return List.of(out);
    }

    private static void record(RequestRecord[] out, RequestRecord r, ProgressBar bar) {
        out[r.index()] = r;
        if (bar != null) {
            bar.finished(r);
        }
    }
}
