package ai.punica.bench.serve;

import java.util.Arrays;

/**
 * Summary of a latency sample (NaNs dropped): count, mean, min, max and the 50th, 90th, 95th and 99th
 * percentiles. Percentiles interpolate linearly between the closest ranks (NumPy's default): for sorted
 * x₀ ≤ … ≤ xₙ₋₁ and h = (n − 1)·p/100, P = x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋). All NaN when the sample is empty.
 */
public record Distribution(int count, double mean, double min, double p50, double p90, double p95, double p99,
                           double max) {

    public static Distribution of(double[] values) {
        double[] x = Arrays.stream(values).filter(v -> !Double.isNaN(v)).sorted().toArray();
        if (x.length == 0) {
            return new Distribution(0, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN,
                    Double.NaN);
        }
        return new Distribution(x.length, Arrays.stream(x).average().orElseThrow(), x[0], percentile(x, 50),
                percentile(x, 90), percentile(x, 95), percentile(x, 99), x[x.length - 1]);
    }

    /** The p-th percentile of {@code sorted} (ascending, no NaN), interpolated as above. */
    public static double percentile(double[] sorted, double p) {
        if (sorted.length == 0) {
            return Double.NaN;
        }
        double h = (sorted.length - 1) * p / 100;
        int lo = (int) Math.floor(h);
        if (lo >= sorted.length - 1) {
            return sorted[sorted.length - 1];
        }
        return sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo]);
    }

    /** The same distribution in other units ({@code factor} 1000: seconds to milliseconds). */
    public Distribution scaled(double factor) {
        return new Distribution(count, mean * factor, min * factor, p50 * factor, p90 * factor, p95 * factor,
                p99 * factor, max * factor);
    }
}
