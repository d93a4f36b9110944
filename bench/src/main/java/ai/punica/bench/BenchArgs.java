package ai.punica.bench;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The bench mains' command lines, {@code --name value} pairs, read with a default per name:
 * {@code args.integer("rank", 16)}. A value that does not parse is refused naming its option.
 */
final class BenchArgs {
    private final Map<String, String> values;

    private BenchArgs(Map<String, String> values) {
        this.values = values;
    }

    static BenchArgs parse(String[] argv) {
        Map<String, String> values = new LinkedHashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("arguments are --name value pairs; got '" + argv[i] + "'");
            }
            values.put(argv[i].substring(2), argv[++i]);
        }
        return new BenchArgs(values);
    }

    /** --backend: the backend to measure (default cuda: these benches are for the GPU machine). */
    String backend() {
        return string("backend", "cuda");
    }

    /** --shape: the model shape of {@link DecodeStepBench#modelConfig}, llama7b (default), small or tiny. */
    String shape() {
        return string("shape", "llama7b");
    }

    /** --seed of the random weights and workloads (default 1). */
    long seed() {
        return longInteger("seed", 1);
    }

    /** --out: the CSV file to write, or null for none. */
    Path out() {
        return path("out");
    }

    boolean has(String name) {
        return values.containsKey(name);
    }

    String string(String name, String fallback) {
        return values.getOrDefault(name, fallback);
    }

    /** The path given, or null when the option is absent. */
    Path path(String name) {
        return has(name) ? Path.of(values.get(name)) : null;
    }

    int integer(String name, int fallback) {
        return has(name) ? (int) parse(name, values.get(name), Integer.MIN_VALUE, Integer.MAX_VALUE) : fallback;
    }

    long longInteger(String name, long fallback) {
        return has(name) ? parse(name, values.get(name), Long.MIN_VALUE, Long.MAX_VALUE) : fallback;
    }

    double real(String name, double fallback) {
        if (!has(name)) {
            return fallback;
        }
        try {
            return Double.parseDouble(values.get(name));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + ": '" + values.get(name) + "' is not a number");
        }
    }

    boolean bool(String name, boolean fallback) {
        return has(name) ? Boolean.parseBoolean(values.get(name)) : fallback;
    }

    /** A comma-separated list, e.g. {@code --workloads none,distinct}. */
    List<String> strings(String name, String fallback) {
        return Arrays.stream(string(name, fallback).split(",")).map(String::trim).toList();
    }

    /** A comma-separated list of integers, e.g. {@code --batches 1,8,32}. */
    int[] integers(String name, String fallback) {
        return strings(name, fallback).stream()
                .mapToInt(s -> (int) parse(name, s, Integer.MIN_VALUE, Integer.MAX_VALUE)).toArray();
    }

    private static long parse(String name, String value, long min, long max) {
        long v;
        try {
            v = Long.parseLong(value.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + ": '" + value + "' is not an integer");
        }
        if (v < min || v > max) {
            throw new IllegalArgumentException("--" + name + ": " + value + " is out of range");
        }
        return v;
    }
}
