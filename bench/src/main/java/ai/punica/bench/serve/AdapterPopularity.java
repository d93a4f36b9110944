package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Which model each request asks for: Punica's workloads (Chen et al., MLSys 2024, §7): Distinct (every request
 * its own adapter), Uniform (n adapters, equally popular), Skewed (n adapters, Zipf-α popularity), Identical (one
 * adapter for all), plus base-only (no adapter: the base model alone, the reference throughput).
 */
public sealed interface AdapterPopularity {

    /** Every request its own adapter: request i gets adapter i mod (adapters available), in order. */
    record Distinct() implements AdapterPopularity {
    }

    /** Each request picks one of the first {@code n} adapters uniformly at random. */
    record Uniform(int n) implements AdapterPopularity {
    }

    /**
     * Each request picks one of the first {@code n} adapters with P(rank k) = k^(−α) / Σⱼ j^(−α) (Zipf), adapter
     * 0 the most popular.
     */
    record Skewed(int n, double alpha) implements AdapterPopularity {
    }

    /** Every request asks for the first adapter. */
    record Identical() implements AdapterPopularity {
    }

    /** Every request asks for the base model. */
    record BaseOnly() implements AdapterPopularity {
    }

    /** Punica's Zipf parameter for its Skewed workload (the segment lengths of its benchmarks grow by 1.5×). */
    double DEFAULT_ZIPF_ALPHA = 1.5;

    /**
     * Parses distinct, uniform[:N], skewed[:N[:ALPHA]], identical, base (N defaults to every adapter given).
     */
    static AdapterPopularity parse(String spec, int adaptersAvailable) {
        String[] parts = spec.trim().split(":");
        try {
            int n = parts.length > 1 ? Integer.parseInt(parts[1]) : adaptersAvailable;
            return switch (parts[0]) {
                case "distinct" -> new Distinct();
                case "uniform" -> new Uniform(n);
                case "skewed" -> new Skewed(n, parts.length > 2 ? Double.parseDouble(parts[2]) : DEFAULT_ZIPF_ALPHA);
                case "identical" -> new Identical();
                case "base", "base-only", "none" -> new BaseOnly();
                default -> throw new IllegalArgumentException("unknown workload '" + spec + "'; known: distinct, "
                        + "uniform[:N], skewed[:N[:ALPHA]], identical, base");
            };
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("workload '" + spec + "': " + e.getMessage()
                    + " is not a number (e.g. uniform:100 or skewed:100:1.5)");
        }
    }

    /** A short name for reports: "uniform:100", "skewed:100:1.5", ... */
    default String describe() {
        return switch (this) {
            case Distinct d -> "distinct";
            case Uniform u -> "uniform:" + u.n();
            case Skewed s -> "skewed:" + s.n() + ":" + s.alpha();
            case Identical i -> "identical";
            case BaseOnly b -> "base";
        };
    }

    /**
     * The model of each of {@code count} requests: adapter names from {@code adapters}, or {@code baseModel}. An
     * {@link IllegalArgumentException} says when there are too few adapters for the workload.
     */
    default List<String> assign(int count, List<String> adapters, String baseModel, SplittableRandom random) {
        int needed = switch (this) {
            case Distinct d -> 1;
            case Uniform u -> u.n();
            case Skewed s -> s.n();
            case Identical i -> 1;
            case BaseOnly b -> 0;
        };
        if (needed > adapters.size() || (needed <= 0 && !(this instanceof BaseOnly))) {
            throw new IllegalArgumentException("workload " + describe() + " needs " + Math.max(1, needed)
                    + " adapters but " + adapters.size() + " were given (--adapters, or the server's /v1/models)");
        }
        List<String> out = new ArrayList<>(count);
        double[] cdf = this instanceof Skewed s ? zipfCdf(s.n(), s.alpha()) : null;
        for (int i = 0; i < count; i++) {
            out.add(switch (this) {
                case Distinct d -> adapters.get(i % adapters.size());
                case Uniform u -> adapters.get(random.nextInt(u.n()));
                case Skewed s -> adapters.get(sampleCdf(cdf, random.nextDouble()));
                case Identical d -> adapters.getFirst();
                case BaseOnly b -> baseModel;
            });
        }
        return out;
    }

    /** P(rank ≤ k+1) for k = 0..n−1 of Zipf(α) over n ranks. */
    static double[] zipfCdf(int n, double alpha) {
        double[] cdf = new double[n];
        double sum = 0;
        for (int k = 0; k < n; k++) {
            sum += Math.pow(k + 1, -alpha);
            cdf[k] = sum;
        }
        for (int k = 0; k < n; k++) {
            cdf[k] /= sum;
        }
        cdf[n - 1] = 1;
        return cdf;
    }

    private static int sampleCdf(double[] cdf, double u) {
        int i = Arrays.binarySearch(cdf, u);
        return i >= 0 ? i : Math.min(cdf.length - 1, -i - 1);
    }
}
