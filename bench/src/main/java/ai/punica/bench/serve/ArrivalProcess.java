package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/** How requests arrive: open loop (at times drawn in advance, whatever the server does) or closed loop. */
public sealed interface ArrivalProcess {

    /**
     * Open loop: inter-arrival gaps gamma-distributed with shape {@code burstiness} and mean 1/λ(t) (shape 1 is
     * a Poisson process; below 1 burstier, above 1 more regular: the coefficient of variation of the gaps is
     * 1/√shape), following {@code schedule}'s rate. Stops after {@code maxRequests} or at the schedule's end.
     */
    record OpenLoop(RateSchedule schedule, double burstiness, int maxRequests) implements ArrivalProcess {
        public OpenLoop {
            if (!(burstiness > 0) || Double.isInfinite(burstiness)) {
                throw new IllegalArgumentException("burstiness (gamma shape) " + burstiness + " must be positive");
            }
            if (maxRequests <= 0 && Double.isInfinite(schedule.seconds())) {
                throw new IllegalArgumentException("a constant rate needs a number of requests");
            }
        }

        /**
         * Arrival times in seconds from the start: unit-rate gamma gaps in operational time, mapped through
         * Λ⁻¹ ({@link RateSchedule#timeOfArrivals}).
         */
        public double[] arrivalTimes(SplittableRandom random) {
            List<Double> times = new ArrayList<>();
            double s = 0;
            int cap = maxRequests > 0 ? maxRequests : Integer.MAX_VALUE;
            while (times.size() < cap) {
                s += Gamma.sample(random, burstiness) / burstiness; // mean 1 in operational time
                double t = schedule.timeOfArrivals(s);
                if (Double.isInfinite(t)) {
                    break;
                }
                times.add(t);
            }
            return times.stream().mapToDouble(Double::doubleValue).toArray();
        }
    }

    /** Closed loop: {@code clients} clients, each sends its next request when its last one finished. */
    record ClosedLoop(int clients, int requests) implements ArrivalProcess {
        public ClosedLoop {
            if (clients <= 0 || requests <= 0) {
                throw new IllegalArgumentException(clients + " concurrent clients and " + requests
                        + " requests: both must be positive");
            }
        }
    }

    /** Gamma(shape, 1) variates (Marsaglia and Tsang 2000; shape < 1 through Gamma(shape + 1)·U^(1/shape)). */
    final class Gamma {
        private Gamma() {
        }

        static double sample(SplittableRandom random, double shape) {
            if (shape == 1) {
                return random.nextExponential();
            }
            if (shape < 1) {
                return sample(random, shape + 1) * Math.pow(random.nextDouble(), 1 / shape);
            }
            double d = shape - 1.0 / 3;
            double c = 1 / Math.sqrt(9 * d);
            while (true) {
                double x = random.nextGaussian();
                double v = 1 + c * x;
                if (v <= 0) {
                    continue;
                }
                v = v * v * v;
                double u = random.nextDouble();
                if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) {
                    return d * v;
                }
            }
        }
    }
}
