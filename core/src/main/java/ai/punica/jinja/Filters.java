package ai.punica.jinja;

import ai.punica.jinja.PyValues.Markup;
import ai.punica.jinja.PyValues.Tuple;
import ai.punica.jinja.PyValues.Undefined;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Function;

/**
 * Jinja2's built-in filters, with transformers' {@code tojson}. Sequence filters ({@code select},
 * {@code map}, ...) treat a falsy input (None, undefined, empty) as empty, as Jinja2 does.
 */
final class Filters {
    static final Set<String> FILTERS = Set.of("abs", "attr", "batch", "bool", "capitalize", "center", "count", "d",
            "default", "dictsort", "e", "escape", "filesizeformat", "first", "float", "forceescape", "format",
            "groupby", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
            "pprint", "random", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr",
            "slice", "sort", "string", "striptags", "sum", "title", "tojson", "trim", "truncate", "unique", "upper",
            "urlencode", "wordcount", "wordwrap", "xmlattr");

    private Filters() {
    }

    static Object arg(List<Object> args, Map<String, Object> kwargs, int i, String name, Object fallback) {
        if (i < args.size()) {
            return args.get(i);
        }
        return kwargs.getOrDefault(name, fallback);
    }

    private static String string(Object v) {
        return PyValues.str(v);
    }

    private static boolean flag(List<Object> args, Map<String, Object> kwargs, int i, String name) {
        return PyValues.truthy(arg(args, kwargs, i, name, false));
    }

    /** The items of a sequence filter's input: none for a falsy value, as Jinja's {@code if value:} gives. */
    private static List<Object> sequence(Object value) {
        return PyValues.truthy(value) ? PyValues.iterate(value) : new ArrayList<>();
    }

    static Object apply(String name, Object value, List<Object> args, Map<String, Object> kwargs, Renderer renderer) {
        return switch (name) {
            case "trim" -> PyValues.strip(string(value), (String) arg(args, kwargs, 0, "chars", null), true, true);
            case "length", "count" -> (long) PyValues.length(value);
            case "upper" -> string(value).toUpperCase(Locale.ROOT);
            case "lower" -> string(value).toLowerCase(Locale.ROOT);
            case "title" -> TextFilters.jinjaTitle(string(value));
            case "capitalize" -> TextFilters.capitalize(string(value));
            case "default", "d" -> {
                boolean onFalsy = flag(args, kwargs, 1, "boolean");
                boolean useDefault = value instanceof Undefined || (onFalsy && !PyValues.truthy(value));
                yield useDefault ? arg(args, kwargs, 0, "default_value", "") : value;
            }
            case "tojson" -> toJson(value, args, kwargs);
            case "string" -> value instanceof Markup ? value : string(value);
            case "int" -> toInt(value, arg(args, kwargs, 0, "default", 0L),
                    Operators.toLong(arg(args, kwargs, 1, "base", 10L), "int base"));
            case "float" -> toFloat(value, arg(args, kwargs, 0, "default", 0.0));
            case "bool" -> PyValues.truthy(value);
            case "abs" -> abs(value);
            case "round" -> round(value, Operators.toLong(arg(args, kwargs, 0, "precision", 0L), "round"),
                    string(arg(args, kwargs, 1, "method", "common")));
            case "first" -> {
                List<Object> items = PyValues.iterate(value);
                yield items.isEmpty() ? new Undefined("first") : items.getFirst();
            }
            case "last" -> {
                List<Object> items = PyValues.iterate(value);
                yield items.isEmpty() ? new Undefined("last") : items.getLast();
            }
            case "random" -> {
                List<Object> items = PyValues.iterate(value);
                if (items.isEmpty()) {
                    throw new IllegalArgumentException("Cannot choose from an empty sequence");
                }
                yield items.get(ThreadLocalRandom.current().nextInt(items.size()));
            }
            case "join" -> {
                String separator = string(arg(args, kwargs, 0, "d", ""));
                Object attribute = arg(args, kwargs, 1, "attribute", null);
                StringBuilder sb = new StringBuilder();
                List<Object> items = PyValues.iterate(value);
                for (int i = 0; i < items.size(); i++) {
                    if (i > 0) {
                        sb.append(separator);
                    }
                    Object item = items.get(i);
                    sb.append(string(attribute == null ? item : attribute(renderer, item, attribute, null)));
                }
                yield sb.toString();
            }
            case "replace" -> {
                String s = string(value);
                String replaced = replace(s, string(arg(args, kwargs, 0, "old", "")),
                        string(arg(args, kwargs, 1, "new", "")),
                        arg(args, kwargs, 2, "count", null) == null ? -1
                                : Operators.toLong(arg(args, kwargs, 2, "count", null), "replace"));
                yield value instanceof Markup ? new Markup(replaced) : replaced;
            }
            case "items" -> value instanceof Undefined || value == null ? new ArrayList<>() : items(value);
            case "list" -> PyValues.iterate(value);
            case "map" -> map(value, args, kwargs, renderer);
            case "selectattr", "rejectattr" -> {
                boolean select = name.equals("selectattr");
                Object attribute = arg(args, kwargs, 0, "attribute", "");
                List<Object> out = new ArrayList<>();
                for (Object item : sequence(value)) {
                    Object v = attribute(renderer, item, attribute, null);
                    boolean passed = args.size() < 2 ? PyValues.truthy(v)
                            : Tests.test(string(args.get(1)), v, args.subList(2, args.size()));
                    if (passed == select) {
                        out.add(item);
                    }
                }
                yield out;
            }
            case "select", "reject" -> {
                boolean select = name.equals("select");
                List<Object> out = new ArrayList<>();
                for (Object item : sequence(value)) {
                    boolean passed = args.isEmpty() ? PyValues.truthy(item)
                            : Tests.test(string(args.getFirst()), item, args.subList(1, args.size()));
                    if (passed == select) {
                        out.add(item);
                    }
                }
                yield out;
            }
            case "indent" -> TextFilters.indent(string(value), arg(args, kwargs, 0, "width", 4L),
                    flag(args, kwargs, 1, "first"), flag(args, kwargs, 2, "blank"));
            case "sort" -> {
                List<Object> items = PyValues.iterate(value);
                items.sort(order(renderer, flag(args, kwargs, 1, "case_sensitive"), arg(args, kwargs, 2, "attribute",
                        null), flag(args, kwargs, 0, "reverse")));
                yield items;
            }
            case "dictsort" -> {
                boolean caseSensitive = flag(args, kwargs, 0, "case_sensitive");
                int by = string(arg(args, kwargs, 1, "by", "key")).equals("value") ? 1 : 0;
                List<Object> items = items(value);
                Comparator<Object> order = (a, b) -> PyValues.compare(sortKey(((List<?>) a).get(by), caseSensitive),
                        sortKey(((List<?>) b).get(by), caseSensitive));
                items.sort(flag(args, kwargs, 2, "reverse") ? order.reversed() : order);
                yield items;
            }
            case "unique" -> {
                boolean caseSensitive = flag(args, kwargs, 0, "case_sensitive");
                Object attribute = arg(args, kwargs, 1, "attribute", null);
                List<Object> out = new ArrayList<>();
                List<Object> seen = new ArrayList<>();
                for (Object item : PyValues.iterate(value)) {
                    Object key = sortKey(attribute == null ? item : attribute(renderer, item, attribute, null),
                            caseSensitive);
                    if (!Operators.contains(seen, key)) {
                        seen.add(key);
                        out.add(item);
                    }
                }
                yield out;
            }
            case "reverse" -> {
                if (PyValues.text(value) != null) {
                    StringBuilder sb = new StringBuilder();
                    List<Object> chars = PyValues.iterate(value);
                    for (int i = chars.size() - 1; i >= 0; i--) {
                        sb.append(chars.get(i));
                    }
                    yield sb.toString();
                }
                List<Object> items = PyValues.iterate(value);
                Collections.reverse(items);
                yield items;
            }
            case "sum" -> {
                Object attribute = arg(args, kwargs, 0, "attribute", null);
                Object total = arg(args, kwargs, 1, "start", 0L);
                for (Object item : PyValues.iterate(value)) {
                    total = Operators.arithmetic("+", total, attribute == null ? item
                            : attribute(renderer, item, attribute, null));
                }
                yield total;
            }
            case "min", "max" -> {
                List<Object> items = PyValues.iterate(value);
                if (items.isEmpty()) {
                    yield new Undefined("No aggregated item, sequence was empty.");
                }
                Comparator<Object> order = order(renderer, flag(args, kwargs, 0, "case_sensitive"),
                        arg(args, kwargs, 1, "attribute", null), false);
                yield name.equals("min") ? Collections.min(items, order) : Collections.max(items, order);
            }
            case "safe" -> value instanceof Markup ? value : new Markup(string(value));
            case "escape", "e" -> value instanceof Markup ? value : new Markup(TextFilters.escapeHtml(string(value)));
            case "forceescape" -> new Markup(TextFilters.escapeHtml(string(value)));
            case "striptags" -> TextFilters.stripTags(string(value));
            case "format" -> Operators.arithmetic("%", value instanceof Markup ? value : string(value),
                    kwargs.isEmpty() ? new Tuple(args) : kwargs);
            case "attr" -> {
                Callable method = Methods.method(value, string(arg(args, kwargs, 0, "name", "")));
                yield method != null ? method : new Undefined(string(arg(args, kwargs, 0, "name", "")));
            }
            case "wordcount" -> TextFilters.wordCount(string(value));
            case "wordwrap" -> TextFilters.wordWrap(string(value),
                    (int) Operators.toLong(arg(args, kwargs, 0, "width", 79L), "wordwrap"),
                    PyValues.truthy(arg(args, kwargs, 1, "break_long_words", true)),
                    string(arg(args, kwargs, 2, "wrapstring", "\n")));
            case "center" -> {
                int width = (int) Operators.toLong(arg(args, kwargs, 0, "width", 80L), "center");
                yield Methods.method(string(value), "center").call(List.of((long) width), Map.of());
            }
            case "truncate" -> TextFilters.truncate(string(value),
                    (int) Operators.toLong(arg(args, kwargs, 0, "length", 255L), "truncate"),
                    flag(args, kwargs, 1, "killwords"), string(arg(args, kwargs, 2, "end", "...")),
                    (int) Operators.toLong(arg(args, kwargs, 3, "leeway", 5L), "truncate"));
            case "batch" -> {
                int size = (int) Operators.toLong(arg(args, kwargs, 0, "linecount", 1L), "batch");
                Object fill = arg(args, kwargs, 1, "fill_with", null);
                List<Object> items = PyValues.iterate(value);
                List<Object> out = new ArrayList<>();
                for (int i = 0; i < items.size(); i += size) {
                    List<Object> batch = new ArrayList<>(items.subList(i, Math.min(items.size(), i + size)));
                    while (fill != null && batch.size() < size) {
                        batch.add(fill);
                    }
                    out.add(batch);
                }
                yield out;
            }
            case "slice" -> slice(PyValues.iterate(value), (int) Operators.toLong(arg(args, kwargs, 0, "slices", 1L),
                    "slice"), arg(args, kwargs, 1, "fill_with", null));
            case "groupby" -> groupBy(value, arg(args, kwargs, 0, "attribute", null), arg(args, kwargs, 1, "default",
                    null), flag(args, kwargs, 2, "case_sensitive"), renderer);
            case "filesizeformat" -> TextFilters.fileSizeFormat(value, flag(args, kwargs, 0, "binary"));
            case "urlencode" -> urlEncode(value);
            case "xmlattr" -> xmlAttr(value, PyValues.truthy(arg(args, kwargs, 0, "autospace", true)));
            case "pprint" -> PyValues.repr(sortedDicts(value));
            default -> throw new IllegalArgumentException("no filter named '" + name + "'");
        };
    }

    /** transformers' tojson: {@code json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)}. */
    private static String toJson(Object value, List<Object> args, Map<String, Object> kwargs) {
        Object indent = arg(args, kwargs, 1, "indent", null);
        Object separators = arg(args, kwargs, 2, "separators", null);
        String itemSep = null;
        String keySep = null;
        if (separators instanceof List<?> seps && seps.size() == 2) {
            itemSep = string(seps.get(0));
            keySep = string(seps.get(1));
        }
        return PyJson.toJson(value, indent == null ? null : (int) Operators.toLong(indent, "tojson indent"),
                flag(args, kwargs, 0, "ensure_ascii"), itemSep, keySep, flag(args, kwargs, 3, "sort_keys"));
    }

    private static Object map(Object value, List<Object> args, Map<String, Object> kwargs, Renderer renderer) {
        List<Object> out = new ArrayList<>();
        if (kwargs.containsKey("attribute")) {
            Object attribute = kwargs.get("attribute");
            for (Object item : sequence(value)) {
                out.add(attribute(renderer, item, attribute, kwargs.containsKey("default") ? kwargs.get("default")
                        : null));
            }
            return out;
        }
        if (args.isEmpty()) {
            throw new IllegalArgumentException("map requires a filter argument");
        }
        String filter = string(args.getFirst());
        if (!FILTERS.contains(filter)) {
            throw new IllegalArgumentException("No filter named '" + filter + "'.");
        }
        List<Object> rest = args.subList(1, args.size());
        for (Object item : sequence(value)) {
            out.add(renderer.applyFilter(filter, item, rest, kwargs));
        }
        return out;
    }

    /** Jinja's attribute getter: {@code "a.b"} and {@code "0"} walk items; a default replaces undefined. */
    static Object attribute(Renderer renderer, Object item, Object attribute, Object fallback) {
        Object v = item;
        List<Object> parts = PyValues.text(attribute) != null
                ? new ArrayList<>(List.of(PyValues.text(attribute).split("\\.", -1))) : List.of(attribute);
        for (Object part : parts) {
            if (part instanceof String p && !p.isEmpty() && p.chars().allMatch(Character::isDigit)) {
                part = Long.parseLong(p);
            }
            v = renderer.getItem(v, part);
            if (v instanceof Undefined) {
                break;
            }
        }
        return v instanceof Undefined && fallback != null ? fallback : v;
    }

    private static Comparator<Object> order(Renderer renderer, boolean caseSensitive, Object attribute,
            boolean reverse) {
        List<Object> attributes = attribute == null ? List.of()
                : PyValues.text(attribute) != null ? List.of((Object[]) PyValues.text(attribute).split(","))
                : List.of(attribute);
        Function<Object, Object> key = item -> {
            if (attributes.isEmpty()) {
                return sortKey(item, caseSensitive);
            }
            List<Object> keys = new ArrayList<>();
            for (Object a : attributes) {
                keys.add(sortKey(attribute(renderer, item, a, null), caseSensitive));
            }
            return keys.size() == 1 ? keys.getFirst() : new Tuple(keys);
        };
        Comparator<Object> order = (a, b) -> PyValues.compare(key.apply(a), key.apply(b));
        return reverse ? order.reversed() : order;
    }

    private static Object sortKey(Object v, boolean caseSensitive) {
        return !caseSensitive && PyValues.text(v) != null ? PyValues.text(v).toLowerCase(Locale.ROOT) : v;
    }

    private static List<Object> slice(List<Object> items, int slices, Object fill) {
        int perSlice = items.size() / slices;
        int withExtra = items.size() % slices;
        int offset = 0;
        List<Object> out = new ArrayList<>();
        for (int n = 0; n < slices; n++) {
            int start = offset + n * perSlice;
            if (n < withExtra) {
                offset++;
            }
            int end = offset + (n + 1) * perSlice;
            List<Object> part = new ArrayList<>(items.subList(start, end));
            if (fill != null && n >= withExtra) {
                part.add(fill);
            }
            out.add(part);
        }
        return out;
    }

    private static List<Object> groupBy(Object value, Object attribute, Object fallback, boolean caseSensitive,
            Renderer renderer) {
        List<Object> items = PyValues.iterate(value);
        Function<Object, Object> key = item -> sortKey(attribute(renderer, item, attribute, fallback), caseSensitive);
        items.sort((a, b) -> PyValues.compare(key.apply(a), key.apply(b)));
        List<Object> groups = new ArrayList<>();
        List<Object> current = null;
        Object currentKey = null;
        for (Object item : items) {
            Object k = key.apply(item);
            if (current == null || !PyValues.equal(k, currentKey)) {
                current = new ArrayList<>();
                currentKey = k;
                groups.add(current);
            }
            current.add(item);
        }
        List<Object> out = new ArrayList<>();
        for (Object g : groups) {
            List<Object> members = castList(g);
            out.add(new Renderer.Group(attribute(renderer, members.getFirst(), attribute, fallback), members));
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static List<Object> castList(Object list) {
        return (List<Object>) list;
    }

    private static String urlEncode(Object value) {
        if (PyValues.text(value) != null) {
            return TextFilters.urlQuote(PyValues.text(value), "/", false);
        }
        List<Object> pairs = value instanceof Map<?, ?> ? items(value) : PyValues.iterate(value);
        List<String> parts = new ArrayList<>();
        for (Object pair : pairs) {
            List<?> kv = (List<?>) pair;
            parts.add(TextFilters.urlQuote(string(kv.get(0)), "", true) + "="
                    + TextFilters.urlQuote(string(kv.get(1)), "", true));
        }
        return String.join("&", parts);
    }

    private static Markup xmlAttr(Object value, boolean autospace) {
        StringBuilder sb = new StringBuilder();
        for (Object pair : items(value)) {
            List<?> kv = (List<?>) pair;
            Object v = kv.get(1);
            if (v == null || v instanceof Undefined) {
                continue;
            }
            String key = string(kv.get(0));
            if (key.isEmpty() || key.chars().anyMatch(c -> Character.isWhitespace(c) || "/>=".indexOf(c) >= 0)) {
                throw new IllegalArgumentException("Invalid character in attribute name: " + PyValues.repr(key));
            }
            if (!sb.isEmpty()) {
                sb.append(' ');
            }
            sb.append(TextFilters.escapeHtml(key)).append("=\"").append(Operators.escapeArgument(v)).append('"');
        }
        return new Markup(autospace && !sb.isEmpty() ? " " + sb : sb.toString());
    }

    /** pprint's rendering of short values: repr with dict keys sorted. */
    private static Object sortedDicts(Object value) {
        if (value instanceof Map<?, ?> map) {
            List<Object> keys = new ArrayList<>(map.keySet());
            keys.sort(PyValues::compare);
            Map<Object, Object> sorted = new java.util.LinkedHashMap<>();
            for (Object k : keys) {
                sorted.put(k, sortedDicts(map.get(k)));
            }
            return sorted;
        }
        if (value instanceof Tuple t) {
            return new Tuple(t.stream().map(Filters::sortedDicts).toList());
        }
        if (value instanceof List<?> list) {
            return new ArrayList<>(list.stream().map(Filters::sortedDicts).toList());
        }
        return value;
    }

    static String replace(String s, String old, String replacement, long count) {
        if (count < 0) {
            return s.replace(old, replacement);
        }
        StringBuilder sb = new StringBuilder();
        int start = 0;
        for (long done = 0; done < count; done++) {
            int at = s.indexOf(old, start);
            if (at < 0) {
                break;
            }
            sb.append(s, start, at).append(replacement);
            start = at + old.length();
            if (old.isEmpty()) {
                if (start < s.length()) {
                    sb.append(s.charAt(start));
                }
                start++;
            }
        }
        if (start <= s.length()) {
            sb.append(s.substring(Math.min(start, s.length())));
        }
        return sb.toString();
    }

    static List<Object> items(Object value) {
        if (!(value instanceof Map<?, ?> map)) {
            throw new IllegalArgumentException("items: expected a mapping, got '" + PyValues.typeName(value) + "'");
        }
        List<Object> out = new ArrayList<>(map.size());
        map.forEach((k, v) -> out.add(new Tuple(k, v)));
        return out;
    }

    private static Object abs(Object value) {
        if (value instanceof Double d) {
            return Math.abs(d);
        }
        if (value instanceof Boolean b) {
            return b ? 1L : 0L;
        }
        if (!PyValues.isIntegral(value)) {
            throw new IllegalArgumentException("bad operand type for abs(): '" + PyValues.typeName(value) + "'");
        }
        return PyValues.integer(PyValues.big(value).abs());
    }

    /** Jinja's round: Python's round() (half to even, exact) for 'common'; an int stays an int. */
    private static Object round(Object value, long precision, String method) {
        if (!Operators.isNumeric(value)) {
            throw new IllegalArgumentException("round: expected a number, got '" + PyValues.typeName(value) + "'");
        }
        if (method.equals("common")) {
            if (PyValues.isIntegral(value) || value instanceof Boolean) {
                BigInteger n = value instanceof Boolean b ? BigInteger.valueOf(b ? 1 : 0) : PyValues.big(value);
                return precision >= 0 ? PyValues.integer(n) : PyValues.integer(new BigDecimal(n)
                        .setScale((int) precision, RoundingMode.HALF_EVEN).toBigInteger());
            }
            double d = ((Number) value).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                return d;
            }
            return new BigDecimal(d).setScale((int) precision, RoundingMode.HALF_EVEN).doubleValue();
        }
        if (!method.equals("ceil") && !method.equals("floor")) {
            throw new IllegalArgumentException("method must be common, ceil or floor");
        }
        double scale = Math.pow(10, precision);
        double x = ((Number) (value instanceof Boolean b ? (b ? 1L : 0L) : value)).doubleValue() * scale;
        return (method.equals("ceil") ? Math.ceil(x) : Math.floor(x)) / scale;
    }

    /** Jinja's int filter: int(value, base) for strings, int(value) otherwise, then int(float(value)), else the default. */
    private static Object toInt(Object value, Object fallback, long base) {
        if (value instanceof Boolean b) {
            return b ? 1L : 0L;
        }
        if (PyValues.isIntegral(value)) {
            return value;
        }
        if (value instanceof Double d) {
            return Double.isNaN(d) || Double.isInfinite(d) ? fallback : PyValues.integer(new BigDecimal(d).toBigInteger());
        }
        String text = PyValues.text(value);
        if (text == null) {
            return fallback;
        }
        String t = text.strip().replace("_", "");
        int radix = (int) base;
        String digits = t.startsWith("-") || t.startsWith("+") ? t.substring(1) : t;
        String sign = t.startsWith("-") ? "-" : "";
        String lower = digits.toLowerCase(Locale.ROOT);
        if ((radix == 16 || radix == 0) && lower.startsWith("0x")) {
            digits = digits.substring(2);
            radix = 16;
        } else if ((radix == 8 || radix == 0) && lower.startsWith("0o")) {
            digits = digits.substring(2);
            radix = 8;
        } else if ((radix == 2 || radix == 0) && lower.startsWith("0b")) {
            digits = digits.substring(2);
            radix = 2;
        } else if (radix == 0) {
            radix = 10;
        }
        try {
            return PyValues.integer(new BigInteger(sign + digits, radix));
        } catch (NumberFormatException | ArithmeticException e) {
            Object f = toFloat(text, null);
            return f instanceof Double d && !d.isNaN() && !d.isInfinite()
                    ? PyValues.integer(new BigDecimal(d).toBigInteger()) : fallback;
        }
    }

    /** Python's float(): also "inf", "-infinity", "nan" in any case, underscores between digits. */
    static Object toFloat(Object value, Object fallback) {
        if (value instanceof Boolean b) {
            return b ? 1.0 : 0.0;
        }
        if (value instanceof Number n) {
            return n.doubleValue();
        }
        String text = PyValues.text(value);
        if (text == null) {
            return fallback;
        }
        String t = text.strip().toLowerCase(Locale.ROOT);
        String body = t.startsWith("-") || t.startsWith("+") ? t.substring(1) : t;
        double sign = t.startsWith("-") ? -1 : 1;
        if (body.equals("inf") || body.equals("infinity")) {
            return sign * Double.POSITIVE_INFINITY;
        }
        if (body.equals("nan")) {
            return Double.NaN;
        }
        if (!body.matches("(\\d(_?\\d)*)?(\\.(\\d(_?\\d)*)?)?(e[+-]?\\d(_?\\d)*)?") || body.matches("\\.?(e.*)?")) {
            return fallback;
        }
        return Double.parseDouble(t.replace("_", ""));
    }
}
