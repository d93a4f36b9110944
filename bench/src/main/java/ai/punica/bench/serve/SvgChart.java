package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A line chart as inline SVG (no script, no external resource): axes with "nice" ticks (1, 2 or 5 × 10ᵏ), grid
 * lines, one polyline per series, a legend. Series longer than {@value #MAX_POINTS} points are thinned to that
 * many, evenly by index, keeping the last.
 */
final class SvgChart {
    private static final int MAX_POINTS = 600;
    private static final int WIDTH = 560;
    private static final int HEIGHT = 300;
    private static final int LEFT = 64;
    private static final int RIGHT = 16;
    private static final int TOP = 34;
    private static final int BOTTOM = 46;
    static final String[] COLORS = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

    private record Series(String name, double[] x, double[] y, String color, boolean steps) {
    }

    private final String id;
    private final String title;
    private final String xLabel;
    private final String yLabel;
    private final List<Series> series = new ArrayList<>();
    private double yMinFixed = Double.NaN;
    private double yMaxFixed = Double.NaN;

    SvgChart(String id, String title, String xLabel, String yLabel) {
        this.id = id;
        this.title = title;
        this.xLabel = xLabel;
        this.yLabel = yLabel;
    }

    SvgChart line(String name, double[] x, double[] y) {
        series.add(new Series(name, x, y, COLORS[series.size() % COLORS.length], false));
        return this;
    }

    SvgChart yRange(double min, double max) {
        yMinFixed = min;
        yMaxFixed = max;
        return this;
    }

    /** The empirical CDF of {@code values} (NaN dropped) as a step line: x = value, y = fraction ≤ x. */
    SvgChart cdf(String name, double[] values) {
        double[] x = java.util.Arrays.stream(values).filter(v -> !Double.isNaN(v)).sorted().toArray();
        double[] y = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            y[i] = (i + 1.0) / x.length;
        }
        series.add(new Series(name, x, y, COLORS[series.size() % COLORS.length], true));
        return yRange(0, 1);
    }

    boolean isEmpty() {
        return series.stream().allMatch(s -> finiteCount(s) == 0);
    }

    String render() {
        double xMin = Double.POSITIVE_INFINITY;
        double xMax = Double.NEGATIVE_INFINITY;
        double yMin = Double.POSITIVE_INFINITY;
        double yMax = Double.NEGATIVE_INFINITY;
        for (Series s : series) {
            for (int i = 0; i < s.x().length; i++) {
                if (Double.isFinite(s.x()[i]) && Double.isFinite(s.y()[i])) {
                    xMin = Math.min(xMin, s.x()[i]);
                    xMax = Math.max(xMax, s.x()[i]);
                    yMin = Math.min(yMin, s.y()[i]);
                    yMax = Math.max(yMax, s.y()[i]);
                }
            }
        }
        StringBuilder svg = new StringBuilder();
        svg.append(String.format(Locale.ROOT, "<svg class=\"plot\" id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" "
                + "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">%n", id, WIDTH,
                HEIGHT, WIDTH, HEIGHT, Html.escape(title)));
        svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"18\" class=\"title\">%s</text>%n", LEFT,
                Html.escape(title)));
        if (!Double.isFinite(xMin)) {
            svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" class=\"empty\">no data</text>%n",
                    WIDTH / 2 - 30, HEIGHT / 2));
            return svg.append("</svg>\n").toString();
        }
        if (!Double.isNaN(yMinFixed)) {
            yMin = yMinFixed;
            yMax = yMaxFixed;
        } else {
            yMin = Math.min(0, yMin);
        }
        double[] xTicks = ticks(xMin == xMax ? xMin - 1 : xMin, xMin == xMax ? xMax + 1 : xMax);
        double[] yTicks = ticks(yMin, yMax == yMin ? yMin + 1 : yMax);
        double x0 = xTicks[0];
        double x1 = xTicks[xTicks.length - 1];
        double y0 = yTicks[0];
        double y1 = yTicks[yTicks.length - 1];
        int plotW = WIDTH - LEFT - RIGHT;
        int plotH = HEIGHT - TOP - BOTTOM;
        java.util.function.DoubleUnaryOperator px = v -> LEFT + (v - x0) / (x1 - x0) * plotW;
        java.util.function.DoubleUnaryOperator py = v -> TOP + plotH - (v - y0) / (y1 - y0) * plotH;
        svg.append("<g class=\"grid\">\n");
        for (double t : xTicks) {
            svg.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                            + "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%s</text>%n",
                    px.applyAsDouble(t), TOP, px.applyAsDouble(t), TOP + plotH, px.applyAsDouble(t), TOP + plotH + 14,
                    label(t, xTicks[1] - xTicks[0])));
        }
        for (double t : yTicks) {
            svg.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                            + "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%s</text>%n",
                    LEFT, py.applyAsDouble(t), LEFT + plotW, py.applyAsDouble(t), LEFT - 4, py.applyAsDouble(t) + 4,
                    label(t, yTicks[1] - yTicks[0])));
        }
        svg.append("</g>\n");
        svg.append(String.format(Locale.ROOT, "<rect class=\"frame\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>%n",
                LEFT, TOP, plotW, plotH));
        svg.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">%s</text>%n",
                LEFT + plotW / 2, HEIGHT - 8, Html.escape(xLabel)));
        svg.append(String.format(Locale.ROOT, "<text x=\"14\" y=\"%d\" class=\"axis\" text-anchor=\"middle\" "
                + "transform=\"rotate(-90 14 %d)\">%s</text>%n", TOP + plotH / 2, TOP + plotH / 2, Html.escape(yLabel)));
        int legendX = LEFT + 8;
        for (Series s : series) {
            StringBuilder points = new StringBuilder();
            int n = s.x().length;
            int stride = Math.max(1, (n + MAX_POINTS - 1) / MAX_POINTS);
            double lastY = Double.NaN;
            for (int i = 0; i < n; i += stride) {
                int k = Math.min(i, n - 1);
                if (i + stride >= n) {
                    k = n - 1;
                }
                double xv = s.x()[k];
                double yv = s.y()[k];
                if (!Double.isFinite(xv) || !Double.isFinite(yv)) {
                    continue;
                }
                if (s.steps() && !Double.isNaN(lastY)) {
                    points.append(String.format(Locale.ROOT, "%.1f,%.1f ", px.applyAsDouble(xv), py.applyAsDouble(lastY)));
                }
                points.append(String.format(Locale.ROOT, "%.1f,%.1f ", px.applyAsDouble(xv), py.applyAsDouble(yv)));
                lastY = yv;
            }
            svg.append(String.format(Locale.ROOT, "<polyline class=\"series\" data-series=\"%s\" fill=\"none\" "
                    + "stroke=\"%s\" stroke-width=\"1.8\" points=\"%s\"/>%n", Html.escape(s.name()), s.color(),
                    points.toString().strip()));
            svg.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                    + "<text x=\"%d\" y=\"%d\" class=\"legend\">%s</text>%n", legendX, TOP + 6, s.color(),
                    legendX + 14, TOP + 15, Html.escape(s.name())));
            legendX += 24 + 7 * s.name().length();
        }
        return svg.append("</svg>\n").toString();
    }

    private static int finiteCount(Series s) {
        int n = 0;
        for (int i = 0; i < s.x().length; i++) {
            if (Double.isFinite(s.x()[i]) && Double.isFinite(s.y()[i])) {
                n++;
            }
        }
        return n;
    }

    /** Ticks at multiples of 1, 2 or 5 × 10ᵏ covering [lo, hi] with 4 to 10 intervals. */
    static double[] ticks(double lo, double hi) {
        double span = hi - lo;
        double step = Math.pow(10, Math.floor(Math.log10(span / 5)));
        for (double m : new double[] {1, 2, 5, 10}) {
            if (span / (step * m) <= 8) {
                step *= m;
                break;
            }
        }
        double first = Math.floor(lo / step) * step;
        double last = Math.ceil(hi / step) * step;
        int n = (int) Math.round((last - first) / step) + 1;
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = first + i * step;
        }
        return out;
    }

    /** A tick label with as many decimals as the tick step needs; thousands as "k" when the step allows. */
    static String label(double v, double step) {
        if (Math.abs(v) < step * 1e-9) {
            return "0";
        }
        boolean kilo = Math.abs(v) >= 1e4 && step >= 100;
        double shown = kilo ? v / 1e3 : v;
        double shownStep = kilo ? step / 1e3 : step;
        int decimals = (int) Math.max(0, -Math.floor(Math.log10(shownStep) + 1e-9));
        return String.format(Locale.ROOT, "%." + decimals + "f", shown) + (kilo ? "k" : "");
    }
}
