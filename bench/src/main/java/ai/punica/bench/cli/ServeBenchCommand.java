package ai.punica.bench.cli;

import ai.punica.bench.serve.AdapterPopularity;
import ai.punica.bench.serve.ArrivalProcess;
import ai.punica.bench.serve.DatasetException;
import ai.punica.bench.serve.HtmlReport;
import ai.punica.bench.serve.RateSchedule;
import ai.punica.bench.serve.RequestSpec;
import ai.punica.bench.serve.ResultsJson;
import ai.punica.bench.serve.RunResult;
import ai.punica.bench.serve.RunSummary;
import ai.punica.bench.serve.ServeBenchConfig;
import ai.punica.bench.serve.ServeBenchmark;
import ai.punica.bench.serve.SweepTable;
import ai.punica.bench.serve.TokenCounter;
import ai.punica.bench.serve.OpenAiStreamClient;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code punica bench serve}: runs workloads × arrival settings against a running OpenAI-compatible server, one
 * run after another, and writes each run's JSON and HTML report plus a summary table of all.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = "Open-loop serving benchmark against an OpenAI-compatible server (Punica-J, vLLM, ...): "
                + "Punica's adapter workloads, Poisson/gamma arrivals or concurrent clients, latency percentiles, "
                + "goodput, JSON and HTML reports.")
final class ServeBenchCommand extends BenchSubcommand {
    @Option(names = "--base-url", defaultValue = "http://127.0.0.1:8000/v1",
            description = "The server's OpenAI base URL (default: ${DEFAULT-VALUE}).")
    URI baseUrl;

    @Option(names = "--api-key", description = "Bearer key (default: the PUNICA_API_KEY or OPENAI_API_KEY "
            + "environment variable, else none).")
    String apiKey;

    @Option(names = "--endpoint", defaultValue = "completions", description = "completions or chat "
            + "(default: ${DEFAULT-VALUE}).")
    String endpoint;

    @Option(names = "--base-model", description = "The base model's id (default: from /v1/models).")
    String baseModel;

    @Option(names = "--adapters", split = ",", description = "Adapter ids to use, in popularity order "
            + "(default: every adapter /v1/models lists).")
    List<String> adapters;

    @Option(names = "--workloads", split = ",", defaultValue = "uniform",
            description = "distinct, uniform[:N], skewed[:N[:ALPHA]], identical, base; several run one after "
                    + "another (default: ${DEFAULT-VALUE}; N: every adapter; ALPHA 1.5).")
    List<String> workloads;

    @Option(names = "--rates", split = ",", description = "Request rates (req/s), open loop; several run one "
            + "after another.")
    List<Double> rates;

    @Option(names = "--burstiness", defaultValue = "1", description = "Gamma shape of the inter-arrival gaps: 1 "
            + "is Poisson, < 1 burstier (default: ${DEFAULT-VALUE}).")
    double burstiness;

    @Option(names = "--schedule", description = "A rate schedule instead of --rates: DURATION@RATE steps and "
            + "DURATION@FROM..TO ramps, e.g. 30s@2,60s@2..20,30s@20..2.")
    String schedule;

    @Option(names = "--concurrency", split = ",", description = "Closed loop: this many clients, each sending its "
            + "next request when its last one finished; several run one after another.")
    List<Integer> concurrency;

    @Option(names = "--num-requests", defaultValue = "200", description = "Requests per run (a schedule runs to "
            + "its end; default: ${DEFAULT-VALUE}).")
    int numRequests;

    @Option(names = "--duration", description = "With --rates: arrivals for this many seconds instead of "
            + "--num-requests (so every rate runs about as long).")
    Double durationSeconds;

    @Option(names = "--dataset", description = "JSONL prompts: {\"prompt\", \"max_tokens\"} or ShareGPT "
            + "{\"conversations\": [...]} lines.")
    Path dataset;

    @Option(names = "--input-len", defaultValue = "128", description = "Synthetic prompt tokens (default: "
            + "${DEFAULT-VALUE}).")
    int inputLen;

    @Option(names = "--output-len", defaultValue = "128", description = "Synthetic output tokens (max_tokens); "
            + "also a dataset's default (default: ${DEFAULT-VALUE}).")
    int outputLen;

    @Option(names = "--range-ratio", defaultValue = "0", description = "Synthetic lengths uniform in "
            + "[len·(1−r), len·(1+r)] (default: ${DEFAULT-VALUE}: exact).")
    double rangeRatio;

    @Option(names = "--tokenizer", description = "Model directory whose tokenizer counts prompt tokens, for "
            + "prompts of exact lengths (default: the server's /tokenize if it has one).")
    Path tokenizer;

    @Option(names = "--no-ignore-eos", description = "Do not send ignore_eos (outputs may end before max_tokens).")
    boolean noIgnoreEos;

    @Option(names = "--temperature", defaultValue = "0", description = "Sampling temperature (default: "
            + "${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--slo-ttft-ms", defaultValue = "2000", description = "Goodput SLO on TTFT (default: "
            + "${DEFAULT-VALUE}).")
    double sloTtftMs;

    @Option(names = "--slo-tpot-ms", defaultValue = "100", description = "Goodput SLO on TPOT (default: "
            + "${DEFAULT-VALUE}).")
    double sloTpotMs;

    @Option(names = "--warmup", defaultValue = "0", description = "Warm-up requests before each run, not "
            + "recorded (default: ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--request-timeout", defaultValue = "600", description = "Seconds until a request's "
            + "response headers must arrive (default: ${DEFAULT-VALUE}).")
    int requestTimeoutSeconds;

    @Option(names = "--metrics-interval", defaultValue = "0.5", description = "Seconds between /metrics scrapes "
            + "(default: ${DEFAULT-VALUE}).")
    double metricsInterval;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of arrivals, models and prompts (default: "
            + "${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--out", defaultValue = "bench-serve-results", description = "Directory for the reports "
            + "(default: ${DEFAULT-VALUE}).")
    Path out;

    @Option(names = "--label", defaultValue = "", description = "Prefix of the runs' file names.")
    String label;

    @Option(names = "--no-progress", description = "No progress bar on stderr.")
    boolean noProgress;

    @Override
    public Integer call() throws Exception {
        List<ArrivalProcess> arrivals = arrivals();
        String key = apiKey != null ? apiKey : System.getenv("PUNICA_API_KEY") != null
                ? System.getenv("PUNICA_API_KEY") : System.getenv("OPENAI_API_KEY");
        if (!endpoint.equals("completions") && !endpoint.equals("chat")) {
            throw usageError("--endpoint " + endpoint + ": completions or chat");
        }
        if (dataset != null && !Files.isRegularFile(dataset)) {
            throw usageError("--dataset " + dataset + ": no such file");
        }
        HttpClient http = OpenAiStreamClient.newHttpClient();
        ServeBenchmark bench = new ServeBenchmark(http, System.err);
        ServeBenchConfig base = new ServeBenchConfig(baseUrl, key, endpoint.equals("chat"), !noIgnoreEos, temperature,
                Duration.ofSeconds(requestTimeoutSeconds), baseModel, adapters, null, null, dataset, inputLen,
                outputLen, rangeRatio, tokenizer, new RunSummary.Slo(sloTtftMs, sloTpotMs), seed,
                Duration.ofMillis((long) (metricsInterval * 1000)), warmup, !noProgress);
        List<String> models;
        try {
            models = bench.listModels(base);
        } catch (java.io.IOException | IllegalStateException e) {
            System.err.println("punica bench serve: cannot list the models of " + baseUrl + ": " + e.getMessage()
                    + " (is the server up? --base-url)");
            return 1;
        }
        String baseId = baseModel != null ? baseModel : models.getFirst();
        List<String> adapterIds = adapters != null ? adapters : models.subList(1, models.size());
        TokenCounter counter;
        try {
            counter = bench.tokenCounter(base, baseId);
        } catch (RuntimeException e) {
            throw usageError("--tokenizer " + tokenizer + ": " + e.getMessage());
        }
        Files.createDirectories(out);
        List<RunResult> results = new ArrayList<>();
        for (String w : workloads) {
            AdapterPopularity workload;
            try {
                workload = AdapterPopularity.parse(w, adapterIds.size());
            } catch (IllegalArgumentException e) {
                throw usageError("--workloads: " + e.getMessage());
            }
            for (ArrivalProcess a : arrivals) {
                ServeBenchConfig config = base.with(workload, a);
                String name = (label.isEmpty() ? "" : label + "_") + workload.describe().replace(':', '-') + "_"
                        + arrivalLabel(a);
                List<RequestSpec> specs;
                try {
                    specs = bench.plan(config, baseId, adapterIds, counter);
                } catch (DatasetException | IllegalArgumentException | java.io.UncheckedIOException e) {
                    System.err.println("punica bench serve: " + e.getMessage());
                    return 1;
                }
                RunResult result = bench.run(name, config, baseId, adapterIds.size(), counter, specs);
                ResultsJson.write(result, out.resolve(name + ".json"));
                HtmlReport.write(result, out.resolve(name + ".html"));
                results.add(result);
                System.out.println(SweepTable.line(result));
            }
        }
        Files.writeString(out.resolve("summary.md"), SweepTable.markdown(results));
        Files.writeString(out.resolve("summary.csv"), SweepTable.csv(results));
        Files.writeString(out.resolve("index.html"), SweepTable.html(results));
        System.out.println();
        System.out.print(SweepTable.markdown(results));
        System.out.println("reports in " + out.toAbsolutePath());
        return results.stream().allMatch(r -> r.summary().completed() > 0) ? 0 : 2;
    }

    private List<ArrivalProcess> arrivals() {
        int modes = (rates != null ? 1 : 0) + (schedule != null ? 1 : 0) + (concurrency != null ? 1 : 0);
        if (modes > 1) {
            throw usageError("give one of --rates, --schedule, --concurrency");
        }
        try {
            List<ArrivalProcess> out = new ArrayList<>();
            if (schedule != null) {
                out.add(new ArrivalProcess.OpenLoop(RateSchedule.parse(schedule), burstiness, 0));
            } else if (concurrency != null) {
                concurrency.forEach(c -> out.add(new ArrivalProcess.ClosedLoop(c, numRequests)));
            } else {
                for (double r : rates != null ? rates : List.of(Double.POSITIVE_INFINITY)) {
                    if (Double.isInfinite(r)) {
                        out.add(new ArrivalProcess.ClosedLoop(numRequests, numRequests));
                    } else if (durationSeconds != null) {
                        out.add(new ArrivalProcess.OpenLoop(new RateSchedule(List.of(new RateSchedule.Segment(
                                durationSeconds, r, r))), burstiness, 0));
                    } else {
                        out.add(new ArrivalProcess.OpenLoop(RateSchedule.constant(r), burstiness, numRequests));
                    }
                }
            }
            return out;
        } catch (IllegalArgumentException e) {
            throw usageError(e.getMessage());
        }
    }

    private static String arrivalLabel(ArrivalProcess a) {
        return switch (a) {
            case ArrivalProcess.OpenLoop o -> o.schedule().segments().size() == 1 && o.schedule().segments()
                    .getFirst().startRate() == o.schedule().segments().getFirst().endRate() ? "rate" + SweepTable
                    .number(o.schedule().segments().getFirst().startRate()) : "schedule";
            case ArrivalProcess.ClosedLoop c -> "c" + c.clients();
        };
    }
}
