package ai.punica.jinja;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Jinja2's default globals: {@code range}, {@code dict}, {@code namespace}, {@code cycler}, {@code joiner}, {@code lipsum}. */
final class Globals {
    /** Jinja's sandbox refuses larger ranges (MAX_RANGE). */
    static final int MAX_RANGE = 100_000;

    private Globals() {
    }

    static void install(Map<String, Object> globals) {
        globals.put("range", (Callable) Globals::range);
        globals.put("namespace", (Callable) (args, kwargs) -> {
            Renderer.Namespace ns = new Renderer.Namespace();
            for (Object a : args) {
                if (a instanceof Map<?, ?> m) {
                    m.forEach((k, v) -> ns.put(String.valueOf(k), v));
                }
            }
            ns.putAll(kwargs);
            return ns;
        });
        globals.put("dict", (Callable) (args, kwargs) -> {
            Map<Object, Object> d = new LinkedHashMap<>();
            for (Object a : args) {
                if (a instanceof Map<?, ?> m) {
                    d.putAll(m);
                }
            }
            d.putAll(kwargs);
            return d;
        });
        globals.put("cycler", (Callable) (args, kwargs) -> cycler(args));
        globals.put("joiner", (Callable) (args, kwargs) -> {
            String separator = args.isEmpty() ? ", " : PyValues.str(args.getFirst());
            boolean[] used = {false};
            return (Callable) (a, k) -> {
                if (used[0]) {
                    return separator;
                }
                used[0] = true;
                return "";
            };
        });
        globals.put("lipsum", (Callable) (args, kwargs) -> {
            throw new IllegalArgumentException("lipsum() generates random text, which a chat template has no use for");
        });
    }

    /** Jinja's cycler: {@code next()}, {@code current}, {@code reset()}. */
    private static Map<String, Object> cycler(List<Object> items) {
        if (items.isEmpty()) {
            throw new IllegalArgumentException("at least one item has to be provided");
        }
        Map<String, Object> cycler = new LinkedHashMap<>();
        int[] position = {0};
        cycler.put("current", items.getFirst());
        cycler.put("next", (Callable) (args, kwargs) -> {
            Object value = items.get(position[0]);
            position[0] = (position[0] + 1) % items.size();
            cycler.put("current", items.get(position[0]));
            return value;
        });
        cycler.put("reset", (Callable) (args, kwargs) -> {
            position[0] = 0;
            cycler.put("current", items.getFirst());
            return null;
        });
        return cycler;
    }

    private static Object range(List<Object> args, Map<String, Object> kwargs) {
        long start = 0;
        long stop;
        long step = 1;
        if (args.size() == 1) {
            stop = Operators.toLong(args.get(0), "range");
        } else if (args.size() == 2 || args.size() == 3) {
            start = Operators.toLong(args.get(0), "range");
            stop = Operators.toLong(args.get(1), "range");
            if (args.size() == 3) {
                step = Operators.toLong(args.get(2), "range");
            }
        } else {
            throw new IllegalArgumentException("range expected 1 to 3 arguments, got " + args.size());
        }
        if (step == 0) {
            throw new IllegalArgumentException("range() arg 3 must not be zero");
        }
        long count = step > 0 ? Math.max(0, (stop - start + step - 1) / step) : Math.max(0, (start - stop - step - 1) / -step);
        if (count > MAX_RANGE) {
            throw new IllegalArgumentException("Range too big. The sandbox blocks ranges larger than MAX_RANGE ("
                    + MAX_RANGE + ").");
        }
        List<Object> out = new ArrayList<>((int) count);
        for (long i = start; step > 0 ? i < stop : i > stop; i += step) {
            out.add(i);
        }
        return out;
    }
}
