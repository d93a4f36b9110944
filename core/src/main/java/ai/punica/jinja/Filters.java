package ai.punica.tokenizer;

import ai.punica.tokenizer.PyValues.Tuple;
import ai.punica.tokenizer.PyValues.Undefined;
import ai.punica.tokenizer.TemplateRuntime.Callable;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Jinja2's built-in filters and tests, and the Python str/dict/list methods templates call. */
final class TemplateFilters {
    static final Set<String> FILTERS = Set.of("trim", "length", "count", "upper", "lower", "title", "capitalize",
            "default", "d", "tojson", "string", "int", "float", "first", "last", "join", "replace", "items", "list",
            "map", "selectattr", "rejectattr", "select", "reject", "indent", "abs", "round", "sort", "unique",
            "reverse", "sum", "min", "max", "safe", "escape", "e", "format", "attr", "dictsort", "wordcount", "center",
            "truncate", "batch", "striptags", "bool");
    static final Set<String> TESTS = Set.of("defined", "undefined", "none", "string", "number", "integer", "float",
            "mapping", "iterable", "sequence", "true", "false", "boolean", "even", "odd", "divisibleby", "eq",
            "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "gt", "greaterthan", ">", "le", "<=", "ge", ">=", "in",
            "callable", "lower", "upper", "sameas", "escaped", "filter", "test");

    private TemplateFilters() {
    }

    private static Object arg(List<Object> args, Map<String, Object> kwargs, int i, String name, Object fallback) {
        if (i < args.size()) {
            return args.get(i);
        }
        return kwargs.getOrDefault(name, fallback);
    }

    private static String string(Object v) {
        return PyValues.str(v);
    }

    static Object apply(String name, Object value, List<Object> args, Map<String, Object> kwargs,
            TemplateRuntime runtime) {
        if (!FILTERS.contains(name)) {
            throw new IllegalArgumentException("no filter named '" + name + "'");
        }
        return switch (name) {
            case "trim" -> PyValues.strip(string(value), (String) arg(args, kwargs, 0, "chars", null), true, true);
            case "length", "count" -> (long) PyValues.length(value);
            case "upper" -> string(value).toUpperCase(Locale.ROOT);
            case "lower" -> string(value).toLowerCase(Locale.ROOT);
            case "title" -> jinjaTitle(string(value));
            case "capitalize" -> capitalize(string(value));
            case "default", "d" -> {
                boolean onFalsy = PyValues.truthy(arg(args, kwargs, 1, "boolean", false));
                boolean useDefault = value instanceof Undefined || (onFalsy && !PyValues.truthy(value));
                yield useDefault ? arg(args, kwargs, 0, "default_value", "") : value;
            }
            case "tojson" -> {
                Object indent = arg(args, kwargs, 0, "indent", null);
                Object separators = kwargs.get("separators");
                String itemSep = null;
                String keySep = null;
                if (separators instanceof List<?> seps && seps.size() == 2) {
                    itemSep = string(seps.get(0));
                    keySep = string(seps.get(1));
                }
                yield PyValues.toJson(value, indent == null ? null : (int) TemplateRuntime.toLong(indent, "tojson indent"),
                        PyValues.truthy(kwargs.getOrDefault("ensure_ascii", false)), itemSep, keySep,
                        PyValues.truthy(kwargs.getOrDefault("sort_keys", false)));
            }
            case "string" -> string(value);
            case "int" -> toInt(value, arg(args, kwargs, 0, "default", 0L));
            case "float" -> toFloat(value, arg(args, kwargs, 0, "default", 0.0));
            case "bool" -> PyValues.truthy(value);
            case "first" -> {
                List<Object> items = PyValues.iterate(value);
                yield items.isEmpty() ? new Undefined("first") : items.getFirst();
            }
            case "last" -> {
                List<Object> items = PyValues.iterate(value);
                yield items.isEmpty() ? new Undefined("last") : items.getLast();
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
                    sb.append(string(attribute == null ? item : runtime.getItem(item, attribute)));
                }
                yield sb.toString();
            }
            case "replace" -> {
                String s = string(value);
                String old = string(arg(args, kwargs, 0, "old", ""));
                String replacement = string(arg(args, kwargs, 1, "new", ""));
                Object count = arg(args, kwargs, 2, "count", null);
                yield replace(s, old, replacement, count == null ? -1 : TemplateRuntime.toLong(count, "replace"));
            }
            case "items" -> items(value);
            case "list" -> PyValues.iterate(value);
            case "map" -> {
                List<Object> out = new ArrayList<>();
                if (kwargs.containsKey("attribute")) {
                    Object attribute = kwargs.get("attribute");
                    for (Object item : PyValues.iterate(value)) {
                        Object v = runtime.getItem(item, attribute);
                        out.add(v instanceof Undefined && kwargs.containsKey("default") ? kwargs.get("default") : v);
                    }
                } else {
                    if (args.isEmpty()) {
                        throw new IllegalArgumentException("map needs a filter name or attribute=...");
                    }
                    String filter = string(args.getFirst());
                    List<Object> rest = args.subList(1, args.size());
                    for (Object item : PyValues.iterate(value)) {
                        out.add(runtime.applyFilter(filter, item, rest, kwargs));
                    }
                }
                yield out;
            }
            case "selectattr", "rejectattr" -> {
                boolean select = name.equals("selectattr");
                String attribute = string(arg(args, kwargs, 0, "attribute", ""));
                List<Object> out = new ArrayList<>();
                for (Object item : PyValues.iterate(value)) {
                    Object v = runtime.getItem(item, attribute);
                    boolean passed = args.size() < 2 ? PyValues.truthy(v)
                            : test(string(args.get(1)), v, args.subList(2, args.size()));
                    if (passed == select) {
                        out.add(item);
                    }
                }
                yield out;
            }
            case "select", "reject" -> {
                boolean select = name.equals("select");
                List<Object> out = new ArrayList<>();
                for (Object item : PyValues.iterate(value)) {
                    boolean passed = args.isEmpty() ? PyValues.truthy(item)
                            : test(string(args.getFirst()), item, args.subList(1, args.size()));
                    if (passed == select) {
                        out.add(item);
                    }
                }
                yield out;
            }
            case "indent" -> indent(string(value), arg(args, kwargs, 0, "width", 4L),
                    PyValues.truthy(arg(args, kwargs, 1, "first", false)),
                    PyValues.truthy(arg(args, kwargs, 2, "blank", false)));
            case "abs" -> value instanceof Double d ? (Object) Math.abs(d) : (Object) Math.abs(TemplateRuntime.toLong(value, "abs"));
            case "round" -> {
                long precision = TemplateRuntime.toLong(arg(args, kwargs, 0, "precision", 0L), "round");
                String method = string(arg(args, kwargs, 1, "method", "common"));
                double scale = Math.pow(10, precision);
                double x = ((Number) value).doubleValue() * scale;
                double r = switch (method) {
                    case "ceil" -> Math.ceil(x);
                    case "floor" -> Math.floor(x);
                    default -> Math.signum(x) * Math.floor(Math.abs(x) + 0.5);
                };
                yield r / scale;
            }
            case "sort" -> {
                boolean reverse = PyValues.truthy(arg(args, kwargs, 0, "reverse", false));
                boolean caseSensitive = PyValues.truthy(arg(args, kwargs, 1, "case_sensitive", false));
                Object attribute = arg(args, kwargs, 2, "attribute", null);
                List<Object> items = PyValues.iterate(value);
                Comparator<Object> order = (a, b) -> {
                    Object x = attribute == null ? a : runtime.getItem(a, attribute);
                    Object y = attribute == null ? b : runtime.getItem(b, attribute);
                    if (!caseSensitive && x instanceof String sx && y instanceof String sy) {
                        return PyValues.compare(sx.toLowerCase(Locale.ROOT), sy.toLowerCase(Locale.ROOT));
                    }
                    return PyValues.compare(x, y);
                };
                items.sort(reverse ? order.reversed() : order);
                yield items;
            }
            case "dictsort" -> {
                List<Object> items = items(value);
                items.sort((a, b) -> PyValues.compare(((List<?>) a).get(0), ((List<?>) b).get(0)));
                yield items;
            }
            case "unique" -> {
                List<Object> out = new ArrayList<>();
                for (Object item : PyValues.iterate(value)) {
                    if (!TemplateRuntime.contains(out, item)) {
                        out.add(item);
                    }
                }
                yield out;
            }
            case "reverse" -> {
                if (value instanceof String s) {
                    yield new StringBuilder(s).reverse().toString();
                }
                List<Object> items = PyValues.iterate(value);
                java.util.Collections.reverse(items);
                yield items;
            }
            case "sum" -> {
                Object attribute = arg(args, kwargs, 0, "attribute", null);
                Object total = arg(args, kwargs, 1, "start", 0L);
                for (Object item : PyValues.iterate(value)) {
                    total = TemplateRuntime.arithmetic("+", total, attribute == null ? item : runtime.getItem(item, attribute));
                }
                yield total;
            }
            case "min", "max" -> {
                List<Object> items = PyValues.iterate(value);
                if (items.isEmpty()) {
                    yield new Undefined(name);
                }
                Object best = items.getFirst();
                for (Object item : items) {
                    int c = PyValues.compare(item, best);
                    if (name.equals("min") ? c < 0 : c > 0) {
                        best = item;
                    }
                }
                yield best;
            }
            case "safe" -> value;
            case "escape", "e" -> string(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    .replace("\"", "&#34;").replace("'", "&#39;");
            case "striptags" -> string(value).replaceAll("<[^>]*>", "").replaceAll("\\s+", " ").strip();
            case "format" -> percentFormat(string(value), args);
            case "attr" -> runtime.getAttribute(value, string(arg(args, kwargs, 0, "name", "")));
            case "wordcount" -> (long) (string(value).isBlank() ? 0 : string(value).strip().split("\\s+").length);
            case "center" -> {
                String s = string(value);
                int width = (int) TemplateRuntime.toLong(arg(args, kwargs, 0, "width", 80L), "center");
                int pad = Math.max(0, width - s.length());
                int left = pad / 2 + (pad % 2 & width % 2);
                yield " ".repeat(left) + s + " ".repeat(pad - left);
            }
            case "truncate" -> {
                String s = string(value);
                int length = (int) TemplateRuntime.toLong(arg(args, kwargs, 0, "length", 255L), "truncate");
                String end = string(arg(args, kwargs, 2, "end", "..."));
                yield s.length() <= length ? s : s.substring(0, Math.max(0, length - end.length())) + end;
            }
            case "batch" -> {
                int size = (int) TemplateRuntime.toLong(arg(args, kwargs, 0, "linecount", 1L), "batch");
                List<Object> items = PyValues.iterate(value);
                List<Object> out = new ArrayList<>();
                for (int i = 0; i < items.size(); i += size) {
                    out.add(new ArrayList<>(items.subList(i, Math.min(items.size(), i + size))));
                }
                yield out;
            }
            default -> throw new IllegalArgumentException("no filter named '" + name + "'");
        };
    }

    static boolean test(String name, Object value, List<Object> args) {
        Object other = args.isEmpty() ? null : args.getFirst();
        return switch (name) {
            case "defined" -> !(value instanceof Undefined);
            case "undefined" -> value instanceof Undefined;
            case "none" -> value == null;
            case "string" -> value instanceof String;
            case "number" -> value instanceof Number;
            case "integer" -> PyValues.isIntegral(value);
            case "float" -> value instanceof Double || value instanceof Float;
            case "boolean" -> value instanceof Boolean;
            case "mapping" -> value instanceof Map;
            case "iterable" -> value instanceof List || value instanceof Map || value instanceof String
                    || value instanceof java.util.Collection;
            case "sequence" -> value instanceof List || value instanceof Map || value instanceof String;
            case "true" -> Boolean.TRUE.equals(value);
            case "false" -> Boolean.FALSE.equals(value);
            case "even" -> TemplateRuntime.toLong(value, "even") % 2 == 0;
            case "odd" -> TemplateRuntime.toLong(value, "odd") % 2 != 0;
            case "divisibleby" -> TemplateRuntime.toLong(value, "divisibleby") % TemplateRuntime.toLong(other, "divisibleby") == 0;
            case "eq", "equalto", "==" -> PyValues.equal(value, other);
            case "ne", "!=" -> !PyValues.equal(value, other);
            case "lt", "lessthan", "<" -> PyValues.compare(value, other) < 0;
            case "gt", "greaterthan", ">" -> PyValues.compare(value, other) > 0;
            case "le", "<=" -> PyValues.compare(value, other) <= 0;
            case "ge", ">=" -> PyValues.compare(value, other) >= 0;
            case "in" -> TemplateRuntime.contains(other, value);
            case "callable" -> value instanceof Callable;
            case "lower" -> value instanceof String s && s.equals(s.toLowerCase(Locale.ROOT));
            case "upper" -> value instanceof String s && s.equals(s.toUpperCase(Locale.ROOT));
            case "sameas" -> value == other || (value != null && PyValues.equal(value, other)
                    && value.getClass() == other.getClass() && !(value instanceof List) && !(value instanceof Map));
            case "escaped" -> false;
            case "filter" -> FILTERS.contains(PyValues.str(value));
            case "test" -> TESTS.contains(PyValues.str(value));
            default -> throw new IllegalArgumentException("no test named '" + name + "'");
        };
    }

    /** Python methods of str, dict and list that templates use; null if {@code target} has no such method. */
    static Callable method(Object target, String name) {
        if (target instanceof String s) {
            return stringMethod(s, name);
        }
        if (target instanceof TemplateRuntime.Namespace) {
            return null;
        }
        if (target instanceof Map<?, ?> map) {
            return switch (name) {
                case "items" -> (args, kwargs) -> items(map);
                case "keys" -> (args, kwargs) -> new ArrayList<Object>(map.keySet());
                case "values" -> (args, kwargs) -> new ArrayList<Object>(map.values());
                case "get" -> (args, kwargs) -> {
                    Object key = args.isEmpty() ? null : args.getFirst();
                    return map.containsKey(key) ? map.get(key) : args.size() > 1 ? args.get(1) : null;
                };
                case "update", "pop", "setdefault", "clear", "popitem" -> immutable("dict", name);
                default -> null;
            };
        }
        if (target instanceof List<?> list) {
            return switch (name) {
                case "index" -> (args, kwargs) -> {
                    for (int i = 0; i < list.size(); i++) {
                        if (PyValues.equal(list.get(i), args.getFirst())) {
                            return (long) i;
                        }
                    }
                    throw new IllegalArgumentException(PyValues.repr(args.getFirst()) + " is not in list");
                };
                case "count" -> (args, kwargs) -> list.stream().filter(o -> PyValues.equal(o, args.getFirst())).count();
                case "append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear" -> immutable("list", name);
                default -> null;
            };
        }
        return null;
    }

    private static Callable immutable(String type, String name) {
        return (args, kwargs) -> {
            throw new IllegalArgumentException(type + "." + name + "() modifies a " + type
                    + ", which chat templates may not do (HF renders them in an immutable sandbox); use namespace() or '+' instead");
        };
    }

    private static Callable stringMethod(String s, String name) {
        return switch (name) {
            case "strip" -> (args, kwargs) -> PyValues.strip(s, charsArg(args), true, true);
            case "lstrip" -> (args, kwargs) -> PyValues.strip(s, charsArg(args), true, false);
            case "rstrip" -> (args, kwargs) -> PyValues.strip(s, charsArg(args), false, true);
            case "upper" -> (args, kwargs) -> s.toUpperCase(Locale.ROOT);
            case "lower" -> (args, kwargs) -> s.toLowerCase(Locale.ROOT);
            case "title" -> (args, kwargs) -> pythonTitle(s);
            case "capitalize" -> (args, kwargs) -> capitalize(s);
            case "startswith" -> (args, kwargs) -> affix(s, args.getFirst(), true);
            case "endswith" -> (args, kwargs) -> affix(s, args.getFirst(), false);
            case "split" -> (args, kwargs) -> split(s, arg(args, kwargs, 0, "sep", null), arg(args, kwargs, 1, "maxsplit", -1L));
            case "splitlines" -> (args, kwargs) -> new ArrayList<Object>(PyValues.splitLines(s));
            case "replace" -> (args, kwargs) -> replace(s, PyValues.str(args.get(0)), PyValues.str(args.get(1)),
                    args.size() > 2 ? TemplateRuntime.toLong(args.get(2), "replace") : -1);
            case "join" -> (args, kwargs) -> {
                StringBuilder sb = new StringBuilder();
                List<Object> items = PyValues.iterate(args.getFirst());
                for (int i = 0; i < items.size(); i++) {
                    if (i > 0) {
                        sb.append(s);
                    }
                    sb.append(PyValues.str(items.get(i)));
                }
                return sb.toString();
            };
            case "find" -> (args, kwargs) -> (long) s.indexOf(PyValues.str(args.getFirst()));
            case "rfind" -> (args, kwargs) -> (long) s.lastIndexOf(PyValues.str(args.getFirst()));
            case "count" -> (args, kwargs) -> {
                String sub = PyValues.str(args.getFirst());
                if (sub.isEmpty()) {
                    return (long) s.length() + 1;
                }
                long n = 0;
                for (int i = s.indexOf(sub); i >= 0; i = s.indexOf(sub, i + sub.length())) {
                    n++;
                }
                return n;
            };
            case "format" -> (args, kwargs) -> braceFormat(s, args, kwargs);
            case "isdigit" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);
            case "isalpha" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
            case "isalnum" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetterOrDigit);
            case "isspace" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(PyValues::isPySpace);
            case "islower" -> (args, kwargs) -> s.equals(s.toLowerCase(Locale.ROOT)) && !s.equals(s.toUpperCase(Locale.ROOT));
            case "isupper" -> (args, kwargs) -> s.equals(s.toUpperCase(Locale.ROOT)) && !s.equals(s.toLowerCase(Locale.ROOT));
            default -> null;
        };
    }

    private static String charsArg(List<Object> args) {
        return args.isEmpty() || args.getFirst() == null ? null : PyValues.str(args.getFirst());
    }

    private static boolean affix(String s, Object candidates, boolean prefix) {
        if (candidates instanceof List<?> list) {
            for (Object c : list) {
                if (affix(s, c, prefix)) {
                    return true;
                }
            }
            return false;
        }
        String c = PyValues.str(candidates);
        return prefix ? s.startsWith(c) : s.endsWith(c);
    }

    private static List<Object> split(String s, Object sep, Object maxsplitArg) {
        long maxsplit = TemplateRuntime.toLong(maxsplitArg, "split");
        List<Object> out = new ArrayList<>();
        if (sep == null) {
            int i = 0;
            int n = s.length();
            while (true) {
                while (i < n && PyValues.isPySpace(s.charAt(i))) {
                    i++;
                }
                if (i >= n) {
                    break;
                }
                if (maxsplit >= 0 && out.size() == maxsplit) {
                    out.add(PyValues.strip(s.substring(i), null, false, true));
                    break;
                }
                int start = i;
                while (i < n && !PyValues.isPySpace(s.charAt(i))) {
                    i++;
                }
                out.add(s.substring(start, i));
            }
            return out;
        }
        String separator = PyValues.str(sep);
        if (separator.isEmpty()) {
            throw new IllegalArgumentException("empty separator");
        }
        int start = 0;
        while (maxsplit < 0 || out.size() < maxsplit) {
            int at = s.indexOf(separator, start);
            if (at < 0) {
                break;
            }
            out.add(s.substring(start, at));
            start = at + separator.length();
        }
        out.add(s.substring(start));
        return out;
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

    private static List<Object> items(Object value) {
        if (value instanceof Undefined) {
            return new ArrayList<>();
        }
        if (!(value instanceof Map<?, ?> map)) {
            throw new IllegalArgumentException("items: expected a mapping, got '" + PyValues.typeName(value) + "'");
        }
        List<Object> out = new ArrayList<>(map.size());
        map.forEach((k, v) -> out.add(new Tuple(k, v)));
        return out;
    }

    private static Object toInt(Object value, Object fallback) {
        if (value instanceof Boolean b) {
            return b ? 1L : 0L;
        }
        if (PyValues.isIntegral(value)) {
            return ((Number) value).longValue();
        }
        if (value instanceof Number n) {
            return (long) n.doubleValue();
        }
        if (value instanceof String s) {
            String t = s.strip().replace("_", "");
            try {
                return Long.parseLong(t);
            } catch (NumberFormatException e) {
                try {
                    return (long) Double.parseDouble(t);
                } catch (NumberFormatException e2) {
                    return fallback;
                }
            }
        }
        return fallback;
    }

    private static Object toFloat(Object value, Object fallback) {
        if (value instanceof Number n) {
            return n.doubleValue();
        }
        if (value instanceof String s) {
            try {
                return Double.parseDouble(s.strip());
            } catch (NumberFormatException e) {
                return fallback;
            }
        }
        return fallback;
    }

    private static String capitalize(String s) {
        if (s.isEmpty()) {
            return s;
        }
        int first = s.codePointAt(0);
        int n = Character.charCount(first);
        return new String(Character.toChars(Character.toTitleCase(first))) + s.substring(n).toLowerCase(Locale.ROOT);
    }

    /** Jinja's title filter: words start after whitespace or one of - ( { [ <. */
    private static String jinjaTitle(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        boolean wordStart = true;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            boolean separator = PyValues.isPySpace(cp) || "-({[<".indexOf(cp) >= 0;
            if (separator) {
                sb.appendCodePoint(cp);
                wordStart = true;
            } else {
                sb.appendCodePoint(wordStart ? Character.toTitleCase(cp) : Character.toLowerCase(cp));
                wordStart = false;
            }
            i += Character.charCount(cp);
        }
        return sb.toString();
    }

    /** Python's str.title(): every letter after a non-letter starts a word. */
    private static String pythonTitle(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            if (Character.isLetter(cp)) {
                sb.appendCodePoint(previousCased ? Character.toLowerCase(cp) : Character.toTitleCase(cp));
                previousCased = true;
            } else {
                sb.appendCodePoint(cp);
                previousCased = false;
            }
            i += Character.charCount(cp);
        }
        return sb.toString();
    }

    private static String indent(String s, Object width, boolean first, boolean blank) {
        String indentation = width instanceof String w ? w : " ".repeat((int) TemplateRuntime.toLong(width, "indent"));
        List<String> lines = PyValues.splitLines(s + "\n");
        StringBuilder sb = new StringBuilder();
        if (blank) {
            sb.append(String.join("\n" + indentation, lines));
        } else {
            sb.append(lines.getFirst());
            for (int i = 1; i < lines.size(); i++) {
                sb.append('\n');
                if (!lines.get(i).isEmpty()) {
                    sb.append(indentation);
                }
                sb.append(lines.get(i));
            }
        }
        return first ? indentation + sb : sb.toString();
    }

    private static final Pattern PERCENT = Pattern.compile("%([-+ 0#]*)(\\d*)(?:\\.(\\d+))?([sdifrx%])");

    /** Python's {@code "..." % args} for the common conversions (%s %d %i %f %r %x). */
    static String percentFormat(String format, List<?> args) {
        Matcher m = PERCENT.matcher(format);
        StringBuilder sb = new StringBuilder();
        int next = 0;
        while (m.find()) {
            String conversion = m.group(4);
            String replacement;
            if (conversion.equals("%")) {
                replacement = "%";
            } else {
                if (next >= args.size()) {
                    throw new IllegalArgumentException("not enough arguments for format string");
                }
                Object a = args.get(next++);
                String flags = m.group(1);
                String widthText = m.group(2);
                String precision = m.group(3);
                replacement = switch (conversion) {
                    case "s" -> PyValues.str(a);
                    case "r" -> PyValues.repr(a);
                    case "d", "i" -> String.valueOf(a instanceof Number n ? (long) n.doubleValue() : a);
                    case "x" -> Long.toHexString(((Number) a).longValue());
                    default -> String.format("%." + (precision == null ? "6" : precision) + "f", ((Number) a).doubleValue());
                };
                if (!widthText.isEmpty()) {
                    int width = Integer.parseInt(widthText);
                    String pad = " ".repeat(Math.max(0, width - replacement.length()));
                    replacement = flags.contains("-") ? replacement + pad : pad + replacement;
                }
            }
            m.appendReplacement(sb, Matcher.quoteReplacement(replacement));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    /** Python's {@code str.format} for {}, {0} and {name} fields. */
    private static String braceFormat(String format, List<Object> args, Map<String, Object> kwargs) {
        StringBuilder sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c == '{' && i + 1 < format.length() && format.charAt(i + 1) == '{') {
                sb.append('{');
                i++;
            } else if (c == '}' && i + 1 < format.length() && format.charAt(i + 1) == '}') {
                sb.append('}');
                i++;
            } else if (c == '{') {
                int close = format.indexOf('}', i);
                if (close < 0) {
                    throw new IllegalArgumentException("single '{' encountered in format string");
                }
                String field = format.substring(i + 1, close);
                int colon = field.indexOf(':');
                if (colon >= 0) {
                    field = field.substring(0, colon);
                }
                Object value;
                if (field.isEmpty()) {
                    value = args.get(auto++);
                } else if (field.chars().allMatch(Character::isDigit)) {
                    value = args.get(Integer.parseInt(field));
                } else {
                    value = kwargs.getOrDefault(field, new Undefined(field));
                }
                sb.append(PyValues.str(value));
                i = close;
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }
}
