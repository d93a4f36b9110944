package ai.punica.bench.serve;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The workloads' adapter popularity and the arrival processes, checked against their distributions. */
class WorkloadStatisticsTest {
    private static final int DRAWS = 20_000;
    /** z of the one-sided 0.1 % tail: a correct sampler fails one seeded run in a thousand. */
    private static final double Z_999 = 3.0902;

    private static List<String> adapters(int n) {
        List<String> names = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            names.add("a" + i);
        }
        return names;
    }

    private static long[] counts(List<String> models, List<String> adapters) {
        long[] counts = new long[adapters.size()];
        for (String m : models) {
            counts[adapters.indexOf(m)]++;
        }
        return counts;
    }

    /** Pearson's χ² of observed counts against expected probabilities. */
    private static double chiSquare(long[] observed, double[] p) {
        long n = Arrays.stream(observed).sum();
        double chi = 0;
        for (int i = 0; i < observed.length; i++) {
            double e = n * p[i];
            chi += (observed[i] - e) * (observed[i] - e) / e;
        }
        return chi;
    }

    /** The χ² critical value at 0.1 % for {@code k} degrees of freedom (Wilson and Hilferty 1931). */
    private static double critical(int k) {
        double a = 2.0 / (9 * k);
        return k * Math.pow(1 - a + Z_999 * Math.sqrt(a), 3);
    }

    @Test
    void uniformPicksEachOfItsAdaptersEquallyOften() {
        List<String> adapters = adapters(20);
        List<String> models = new AdapterPopularity.Uniform(16).assign(DRAWS, adapters, "base",
                new SplittableRandom(7));
        long[] counts = counts(models, adapters);
        assertThat(Arrays.stream(counts, 16, 20).sum()).as("adapters beyond n are never picked").isZero();
        double[] p = new double[16];
        Arrays.fill(p, 1.0 / 16);
        double chi = chiSquare(Arrays.copyOf(counts, 16), p);
        assertThat(chi).as("χ² over 15 degrees of freedom").isLessThan(critical(15));
        // and the test has power: a 20 % bias on one adapter is detected
        counts[0] = (long) (counts[0] * 1.2);
        assertThat(chiSquare(Arrays.copyOf(counts, 16), p)).isGreaterThan(critical(15));
    }

    @Test
    void skewedFollowsZipf() {
        List<String> adapters = adapters(50);
        double alpha = 1.5;
        List<String> models = new AdapterPopularity.Skewed(50, alpha).assign(DRAWS, adapters, "base",
                new SplittableRandom(11));
        long[] counts = counts(models, adapters);
        double[] p = new double[50];
        double h = 0;
        for (int k = 1; k <= 50; k++) {
            h += Math.pow(k, -alpha);
        }
        for (int k = 1; k <= 50; k++) {
            p[k - 1] = Math.pow(k, -alpha) / h;
        }
        // Pool the tail so every expected count is at least 5 (the χ² approximation's condition).
        List<Long> obs = new ArrayList<>();
        List<Double> exp = new ArrayList<>();
        long tailObs = 0;
        double tailP = 0;
        for (int k = 0; k < 50; k++) {
            if (DRAWS * p[k] >= 20 && tailP == 0) {
                obs.add(counts[k]);
                exp.add(p[k]);
            } else {
                tailObs += counts[k];
                tailP += p[k];
            }
        }
        if (tailP > 0) {
            obs.add(tailObs);
            exp.add(tailP);
        }
        double chi = chiSquare(obs.stream().mapToLong(Long::longValue).toArray(),
                exp.stream().mapToDouble(Double::doubleValue).toArray());
        assertThat(chi).as("χ² over %d degrees of freedom", obs.size() - 1).isLessThan(critical(obs.size() - 1));
        assertThat(counts[0]).as("the first adapter is the most popular").isGreaterThan(counts[1]);
        // Against a uniform popularity the same counts are far off.
        double[] uniform = new double[50];
        Arrays.fill(uniform, 1.0 / 50);
        assertThat(chiSquare(counts, uniform)).isGreaterThan(critical(49) * 10);
    }

    @Test
    void distinctGivesEveryRequestItsOwnAdapterAndIdenticalAndBaseOneModel() {
        List<String> adapters = adapters(100);
        List<String> distinct = new AdapterPopularity.Distinct().assign(100, adapters, "base", new SplittableRandom(1));
        assertThat(distinct).doesNotHaveDuplicates().containsExactlyElementsOf(adapters);
        assertThat(new AdapterPopularity.Identical().assign(10, adapters, "base", new SplittableRandom(1)))
                .containsOnly("a0");
        assertThat(new AdapterPopularity.BaseOnly().assign(10, List.of(), "base", new SplittableRandom(1)))
                .containsOnly("base");
        assertThatThrownBy(() -> new AdapterPopularity.Uniform(8).assign(10, adapters(4), "base",
                new SplittableRandom(1))).hasMessageContaining("needs 8 adapters but 4 were given");
        assertThat(AdapterPopularity.parse("skewed:30:1.2", 100)).isEqualTo(new AdapterPopularity.Skewed(30, 1.2));
        assertThat(AdapterPopularity.parse("uniform", 100)).isEqualTo(new AdapterPopularity.Uniform(100));
        assertThatThrownBy(() -> AdapterPopularity.parse("popular", 4)).hasMessageContaining("unknown workload");
    }

    @Test
    void poissonArrivalsHaveTheRateAndExponentialGaps() {
        double rate = 8;
        double[] t = new ArrivalProcess.OpenLoop(RateSchedule.constant(rate), 1, DRAWS)
                .arrivalTimes(new SplittableRandom(3));
        assertThat(t).hasSize(DRAWS);
        double[] gaps = gaps(t);
        double mean = Arrays.stream(gaps).average().orElseThrow();
        double sd = Math.sqrt(Arrays.stream(gaps).map(g -> (g - mean) * (g - mean)).sum() / (gaps.length - 1));
        // The sample mean of n exponentials has standard error mean/√n: 5 of them is far beyond chance.
        assertThat(mean).isCloseTo(1 / rate, org.assertj.core.data.Offset.offset(5 / rate / Math.sqrt(DRAWS)));
        assertThat(sd / mean).as("coefficient of variation of exponential gaps").isCloseTo(1, within(0.05));
        // Kolmogorov–Smirnov against Exp(rate): D·√n below 1.95 (the 0.1 % critical value).
        double[] sorted = gaps.clone();
        Arrays.sort(sorted);
        double d = 0;
        for (int i = 0; i < sorted.length; i++) {
            double cdf = 1 - Math.exp(-rate * sorted[i]);
            d = Math.max(d, Math.max(Math.abs(cdf - (double) i / sorted.length),
                    Math.abs(cdf - (i + 1.0) / sorted.length)));
        }
        assertThat(d * Math.sqrt(sorted.length)).isLessThan(1.95);
    }

    @Test
    void gammaArrivalsHaveTheRateAndTheAskedBurstiness() {
        for (double shape : new double[] {0.5, 4}) {
            double[] gaps = gaps(new ArrivalProcess.OpenLoop(RateSchedule.constant(10), shape, DRAWS)
                    .arrivalTimes(new SplittableRandom(5)));
            double mean = Arrays.stream(gaps).average().orElseThrow();
            double sd = Math.sqrt(Arrays.stream(gaps).map(g -> (g - mean) * (g - mean)).sum() / (gaps.length - 1));
            assertThat(mean).as("mean gap at shape %s", shape).isCloseTo(0.1, within(0.004));
            assertThat(sd / mean).as("CV at shape %s is 1/√shape", shape).isCloseTo(1 / Math.sqrt(shape), within(0.05));
        }
    }

    @Test
    void aRateScheduleRampsUpAndDownAndEnds() {
        RateSchedule s = RateSchedule.parse("100s@20,100s@20..100,100s@100..0");
        assertThat(s.seconds()).isEqualTo(300);
        assertThat(s.rateAt(150)).isEqualTo(60);
        assertThat(s.expectedArrivals(300)).isEqualTo(2000 + 6000 + 5000);
        for (double x : new double[] {0.5, 1999, 2000, 5000, 12_999}) {
            assertThat(s.expectedArrivals(s.timeOfArrivals(x))).isCloseTo(x, within(1e-6));
        }
        double[] t = new ArrivalProcess.OpenLoop(s, 1, 0).arrivalTimes(new SplittableRandom(9));
        assertThat(t[t.length - 1]).isLessThanOrEqualTo(300);
        // Arrivals per segment: Poisson counts, within 4.5 standard deviations of their means.
        assertThat(countIn(t, 0, 100)).isCloseTo(2000, within(4.5 * Math.sqrt(2000)));
        assertThat(countIn(t, 100, 200)).isCloseTo(6000, within(4.5 * Math.sqrt(6000)));
        assertThat(countIn(t, 200, 300)).isCloseTo(5000, within(4.5 * Math.sqrt(5000)));
        assertThat(countIn(t, 280, 300)).as("the ramp down's last 20 s at ≤ 20 req/s")
                .isCloseTo(200, within(4.5 * Math.sqrt(200)));
        assertThatThrownBy(() -> RateSchedule.parse("30s=2")).hasMessageContaining("DURATION@RATE");
        assertThatThrownBy(() -> RateSchedule.parse("30s@fast")).hasMessageContaining("'30s@fast'");
    }

    private static double countIn(double[] t, double from, double to) {
        return Arrays.stream(t).filter(x -> x >= from && x < to).count();
    }

    private static double[] gaps(double[] t) {
        double[] g = new double[t.length];
        for (int i = 0; i < t.length; i++) {
            g[i] = t[i] - (i == 0 ? 0 : t[i - 1]);
        }
        return g;
    }

    private static org.assertj.core.data.Offset<Double> within(double d) {
        return org.assertj.core.data.Offset.offset(d);
    }
}
