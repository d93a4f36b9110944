package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Request rate over time, piecewise linear: each segment lasts {@code seconds} and goes from {@code startRate}
 * to {@code endRate} requests per second (equal for a step, different for a ramp). A constant rate with no end
 * is one segment of infinite length.
 *
 * <p>Arrivals use "operational time": with Λ(t) = ∫₀ᵗ λ(u) du, a renewal process of unit rate in Λ maps to a
 * process of rate λ(t) in t (t = Λ⁻¹(s)). Λ⁻¹ is found segment by segment: within a segment of rate
 * λ(x) = r₀ + k·x, the area up to x is r₀·x + k·x²/2, solved for x.
 */
public record RateSchedule(List<Segment> segments) {

    /** {@code seconds} long, the rate going linearly from {@code startRate} to {@code endRate} (requests/s). */
    public record Segment(double seconds, double startRate, double endRate) {
        public Segment {
            if (!(seconds > 0) || !(startRate >= 0) || !(endRate >= 0) || Double.isInfinite(startRate)
                    || Double.isInfinite(endRate)) {
                throw new IllegalArgumentException("rate segment of " + seconds + " s from " + startRate + " to "
                        + endRate + " req/s: the length must be positive and the rates finite and not negative");
            }
            if (Double.isInfinite(seconds) && startRate != endRate) {
                throw new IllegalArgumentException("a ramp needs a length");
            }
        }

        double area() {
            return Double.isInfinite(seconds) ? (startRate > 0 ? Double.POSITIVE_INFINITY : 0)
                    : seconds * (startRate + endRate) / 2;
        }
    }

    public RateSchedule {
        if (segments.isEmpty()) {
            throw new IllegalArgumentException("a rate schedule needs at least one segment");
        }
        segments = List.copyOf(segments);
    }

    /** {@code rate} requests per second for ever. */
    public static RateSchedule constant(double rate) {
        if (!(rate > 0) || Double.isInfinite(rate)) {
            throw new IllegalArgumentException("request rate " + rate + " must be positive and finite");
        }
        return new RateSchedule(List.of(new Segment(Double.POSITIVE_INFINITY, rate, rate)));
    }

    /**
     * Parses {@code 30s@2,60s@2..10,30s@10..0}: comma-separated segments DURATION@RATE (a step) or
     * DURATION@FROM..TO (a ramp); DURATION in seconds with an optional "s" (or "m" for minutes).
     */
    public static RateSchedule parse(String spec) {
        List<Segment> out = new ArrayList<>();
        for (String part : spec.split(",")) {
            String p = part.trim();
            int at = p.indexOf('@');
            if (at <= 0) {
                throw new IllegalArgumentException("rate schedule segment '" + p + "' is not DURATION@RATE or "
                        + "DURATION@FROM..TO (e.g. 30s@2 or 60s@2..10)");
            }
            try {
                double seconds = duration(p.substring(0, at));
                String rates = p.substring(at + 1);
                int dots = rates.indexOf("..");
                double from = Double.parseDouble(dots < 0 ? rates : rates.substring(0, dots));
                double to = dots < 0 ? from : Double.parseDouble(rates.substring(dots + 2));
                out.add(new Segment(seconds, from, to));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("rate schedule segment '" + p + "' has a number that does not "
                        + "parse: " + e.getMessage() + " (expected e.g. 30s@2 or 60s@2..10)");
            }
        }
        return new RateSchedule(out);
    }

    private static double duration(String text) {
        String t = text.trim().toLowerCase(Locale.ROOT);
        if (t.endsWith("ms")) {
            return Double.parseDouble(t.substring(0, t.length() - 2)) / 1000;
        }
        if (t.endsWith("m")) {
            return Double.parseDouble(t.substring(0, t.length() - 1)) * 60;
        }
        return Double.parseDouble(t.endsWith("s") ? t.substring(0, t.length() - 1) : t);
    }

    /** Total length in seconds (infinite for a constant rate with no end). */
    public double seconds() {
        return segments.stream().mapToDouble(Segment::seconds).sum();
    }

    /** λ(t), requests per second at {@code t} seconds (0 after the end). */
    public double rateAt(double t) {
        double start = 0;
        for (Segment s : segments) {
            if (t < start + s.seconds()) {
                double x = t - start;
                return Double.isInfinite(s.seconds()) ? s.startRate()
                        : s.startRate() + (s.endRate() - s.startRate()) * x / s.seconds();
            }
            start += s.seconds();
        }
        return 0;
    }

    /** Λ(t) = ∫₀ᵗ λ(u) du: the expected number of arrivals by {@code t}. */
    public double expectedArrivals(double t) {
        double start = 0;
        double area = 0;
        for (Segment s : segments) {
            if (t <= start) {
                break;
            }
            double x = Math.min(t - start, s.seconds());
            double k = Double.isInfinite(s.seconds()) ? 0 : (s.endRate() - s.startRate()) / s.seconds();
            area += s.startRate() * x + k * x * x / 2;
            start += s.seconds();
        }
        return area;
    }

    /** Λ⁻¹(s): the time by which {@code s} arrivals are expected; infinite when the schedule ends before. */
    public double timeOfArrivals(double s) {
        double start = 0;
        double remaining = s;
        for (Segment seg : segments) {
            double area = seg.area();
            if (remaining <= area) {
                double r0 = seg.startRate();
                double k = Double.isInfinite(seg.seconds()) ? 0 : (seg.endRate() - r0) / seg.seconds();
                // r0·x + k·x²/2 = remaining; the root in [0, seconds], written to stay exact when k → 0
                double x = Math.abs(k) < 1e-12 ? remaining / r0
                        : 2 * remaining / (r0 + Math.sqrt(Math.max(0, r0 * r0 + 2 * k * remaining)));
                return start + x;
            }
            remaining -= area;
            start += seg.seconds();
        }
        return Double.POSITIVE_INFINITY;
    }

    /** "2 req/s" or "30s@2, 60s@2..10" for reports. */
    public String describe() {
        if (segments.size() == 1 && Double.isInfinite(segments.getFirst().seconds())) {
            return fmt(segments.getFirst().startRate()) + " req/s";
        }
        List<String> parts = new ArrayList<>();
        for (Segment s : segments) {
            parts.add(fmt(s.seconds()) + "s@" + fmt(s.startRate())
                    + (s.endRate() != s.startRate() ? ".." + fmt(s.endRate()) : ""));
        }
        return String.join(",", parts);
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? String.valueOf((long) v) : String.valueOf(v);
    }
}
