package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.ToDoubleFunction;

/**
 * The figures of one run, computed from its {@link RequestRecord}s. Throughputs divide by the run's duration:
 * from the first request sent to the last byte received. Latencies in milliseconds.
 *
 * <p>Goodput (Zhong et al., DistServe, OSDI 2024): the completed requests that met the SLO (TTFT ≤ X and
 * TPOT ≤ Y; a one-token output has no TPOT and meets that half) per second, and their output tokens per second.
 */
public record RunSummary(int requests, int completed, int failed, Map<String, Integer> errors, double durationSeconds,
                         long promptTokens, long outputTokens, double requestsPerSecond, double outputTokensPerSecond,
                         double totalTokensPerSecond, Distribution ttftMs, Distribution tpotMs, Distribution itlMs,
                         Distribution e2eMs, Slo slo, int goodRequests, double goodputRequestsPerSecond,
                         double goodputTokensPerSecond, List<AdapterSummary> perAdapter, Timeline timeline) {

    /** TTFT ≤ ttftMs and TPOT ≤ tpotMs (either may be infinite: no bound). */
    public record Slo(double ttftMs, double tpotMs) {
        boolean met(RequestRecord r) {
            double tpot = r.tpot();
            return r.ok() && r.ttft() * 1e3 <= ttftMs && (Double.isNaN(tpot) || tpot * 1e3 <= tpotMs);
        }
    }

    /** One model's (adapter's or the base's) share of the run. */
    public record AdapterSummary(String model, int requests, int failed, long outputTokens,
                                 double outputTokensPerSecond, Distribution ttftMs, Distribution tpotMs,
                                 Distribution e2eMs) {
    }

    /**
     * Per time bin of {@code binSeconds}, starting at 0: output tokens per second (each text chunk counts its
     * request's tokens ÷ chunks; a request with no chunk counts them at its end), requests finished per second, and requests in flight at the bin's end.
     */
    public record Timeline(double binSeconds, double[] outputTokensPerSecond, double[] finishedPerSecond,
                           int[] inFlight) {
    }

    public static RunSummary of(List<RequestRecord> records, Slo slo) {
        List<RequestRecord> ok = records.stream().filter(RequestRecord::ok).toList();
        Map<String, Integer> errors = new TreeMap<>();
        records.stream().filter(r -> !r.ok()).forEach(r -> errors.merge(r.errorKind(), 1, Integer::sum));
        double start = records.stream().mapToDouble(RequestRecord::sentSeconds).min().orElse(0);
        double end = records.stream().mapToDouble(RequestRecord::endSeconds).max().orElse(0);
        double duration = Math.max(1e-9, end - start);
        long prompt = ok.stream().mapToLong(r -> Math.max(0, r.promptTokens())).sum();
        long output = ok.stream().mapToLong(RequestRecord::outputTokens).sum();
        List<RequestRecord> good = ok.stream().filter(slo::met).toList();
        long goodTokens = good.stream().mapToLong(RequestRecord::outputTokens).sum();

        Map<String, List<RequestRecord>> byModel = new LinkedHashMap<>();
        records.stream().sorted(Comparator.comparing(RequestRecord::model))
                .forEach(r -> byModel.computeIfAbsent(r.model(), m -> new ArrayList<>()).add(r));
        List<AdapterSummary> perAdapter = new ArrayList<>();
        byModel.forEach((model, rs) -> {
            List<RequestRecord> mok = rs.stream().filter(RequestRecord::ok).toList();
            long tokens = mok.stream().mapToLong(RequestRecord::outputTokens).sum();
            perAdapter.add(new AdapterSummary(model, rs.size(), rs.size() - mok.size(), tokens, tokens / duration,
                    ms(mok, RequestRecord::ttft), ms(mok, RequestRecord::tpot), ms(mok, RequestRecord::e2e)));
        });
        perAdapter.sort(Comparator.comparingInt(AdapterSummary::requests).reversed()
                .thenComparing(AdapterSummary::model));

        double[] itl = ok.stream().flatMapToDouble(r -> Arrays.stream(r.interTokenLatencies())).toArray();
        return new RunSummary(records.size(), ok.size(), records.size() - ok.size(), errors, duration, prompt,
                output, ok.size() / duration, output / duration, (prompt + output) / duration,
                ms(ok, RequestRecord::ttft), ms(ok, RequestRecord::tpot), Distribution.of(itl).scaled(1e3),
                ms(ok, RequestRecord::e2e), slo, good.size(), good.size() / duration, goodTokens / duration,
                perAdapter, timeline(records, end));
    }

    private static Distribution ms(List<RequestRecord> rs, ToDoubleFunction<RequestRecord> f) {
        return Distribution.of(rs.stream().mapToDouble(f).toArray()).scaled(1e3);
    }

    /** Bins of 0.1, 0.2, 0.5, 1, 2, 5, ... s, the smallest giving at most 120 bins. */
    static double binSeconds(double end) {
        double[] steps = {1, 2, 5};
        for (double scale = 0.1; ; scale *= 10) {
            for (double s : steps) {
                if (end / (s * scale) <= 120) {
                    return s * scale;
                }
            }
        }
    }

    private static Timeline timeline(List<RequestRecord> records, double end) {
        double bin = binSeconds(Math.max(end, 1e-3));
        int bins = Math.max(1, (int) Math.ceil(end / bin));
        double[] tokens = new double[bins];
        double[] finished = new double[bins];
        int[] inFlight = new int[bins];
        for (RequestRecord r : records) {
            double[] chunks = r.chunkSeconds();
            if (r.ok()) {
                if (chunks.length == 0) {
                    chunks = new double[] {r.endSeconds()};
                }
                double perChunk = (double) r.outputTokens() / chunks.length;
                for (double t : chunks) {
                    tokens[Math.min(bins - 1, (int) (t / bin))] += perChunk / bin;
                }
            }
            if (r.ok()) {
                finished[Math.min(bins - 1, (int) (r.endSeconds() / bin))] += 1 / bin;
            }
            for (int b = 0; b < bins; b++) {
                double t = (b + 1) * bin;
                if (r.sentSeconds() <= t && r.endSeconds() > t) {
                    inFlight[b]++;
                }
            }
        }
        return new Timeline(bin, tokens, finished, inFlight);
    }
}
