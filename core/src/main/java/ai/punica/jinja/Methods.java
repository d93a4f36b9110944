package ai.punica.jinja;

import ai.punica.jinja.PyValues.Tuple;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The Python methods of str, dict and list that templates call ({@code s.strip()},
 * {@code d.items()}). Methods that modify a value are refused, as transformers' immutable sandbox
 * refuses them.
 */
final class Methods {
    private Methods() {
    }

    /** The bound method {@code name} of {@code target}, or null if it has none. */
    static Callable method(Object target, String name) {
        if (PyValues.text(target) != null) {
            return stringMethod(PyValues.text(target), name);
        }
        if (target instanceof Renderer.Namespace) {
            return null;
        }
        if (target instanceof Map<?, ?> map) {
            return switch (name) {
                case "items" -> (args, kwargs) -> Filters.items(map);
                case "keys" -> (args, kwargs) -> new ArrayList<Object>(map.keySet());
                case "values" -> (args, kwargs) -> new ArrayList<Object>(map.values());
                case "get" -> (args, kwargs) -> {
                    Object key = args.isEmpty() ? null : args.getFirst();
                    return map.containsKey(key) ? map.get(key) : args.size() > 1 ? args.get(1) : null;
                };
                case "copy" -> (args, kwargs) -> new LinkedHashMap<Object, Object>(map);
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
                case "copy" -> (args, kwargs) -> new ArrayList<Object>(list);
                case "append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear" -> immutable("list", name);
                default -> null;
            };
        }
        return null;
    }

    private static Callable immutable(String type, String name) {
        return (args, kwargs) -> {
            throw new IllegalArgumentException("access to attribute '" + name + "' of '" + type + "' object is unsafe: "
                    + "chat templates render in an immutable sandbox (use namespace() or '+' instead)");
        };
    }

    private static Callable stringMethod(String s, String name) {
        return switch (name) {
            case "strip" -> (args, kwargs) -> PyValues.strip(s, charsArg(args), true, true);
            case "lstrip" -> (args, kwargs) -> PyValues.strip(s, charsArg(args), true, false);
            case "rstrip" -> (args, kwargs) -> PyValues.strip(s, charsArg(args), false, true);
            case "upper" -> (args, kwargs) -> s.toUpperCase(Locale.ROOT);
            case "lower" -> (args, kwargs) -> s.toLowerCase(Locale.ROOT);
            case "swapcase" -> (args, kwargs) -> swapCase(s);
            case "title" -> (args, kwargs) -> TextFilters.pythonTitle(s);
            case "capitalize" -> (args, kwargs) -> TextFilters.capitalize(s);
            case "startswith" -> (args, kwargs) -> affix(slice(s, args, 1), args.getFirst(), true);
            case "endswith" -> (args, kwargs) -> affix(slice(s, args, 1), args.getFirst(), false);
            case "split" -> (args, kwargs) -> split(s, Filters.arg(args, kwargs, 0, "sep", null),
                    Filters.arg(args, kwargs, 1, "maxsplit", -1L), false);
            case "rsplit" -> (args, kwargs) -> split(s, Filters.arg(args, kwargs, 0, "sep", null),
                    Filters.arg(args, kwargs, 1, "maxsplit", -1L), true);
            case "splitlines" -> (args, kwargs) -> new ArrayList<Object>(PyValues.splitLines(s,
                    PyValues.truthy(Filters.arg(args, kwargs, 0, "keepends", false))));
            case "replace" -> (args, kwargs) -> Filters.replace(s, PyValues.str(args.get(0)), PyValues.str(args.get(1)),
                    args.size() > 2 ? Operators.toLong(args.get(2), "replace") : -1);
            case "join" -> (args, kwargs) -> {
                StringBuilder sb = new StringBuilder();
                List<Object> items = PyValues.iterate(args.getFirst());
                for (int i = 0; i < items.size(); i++) {
                    if (PyValues.text(items.get(i)) == null) {
                        throw new IllegalArgumentException("sequence item " + i + ": expected str instance, "
                                + PyValues.typeName(items.get(i)) + " found");
                    }
                    if (i > 0) {
                        sb.append(s);
                    }
                    sb.append(PyValues.str(items.get(i)));
                }
                return sb.toString();
            };
            case "find", "index" -> (args, kwargs) -> {
                long at = codePointIndex(s, s.indexOf(PyValues.str(args.getFirst()), charIndex(s, args, 1)));
                if (at < 0 && name.equals("index")) {
                    throw new IllegalArgumentException("substring not found");
                }
                return at;
            };
            case "rfind", "rindex" -> (args, kwargs) -> {
                long at = codePointIndex(s, s.lastIndexOf(PyValues.str(args.getFirst())));
                if (at < 0 && name.equals("rindex")) {
                    throw new IllegalArgumentException("substring not found");
                }
                return at;
            };
            case "count" -> (args, kwargs) -> {
                String sub = PyValues.str(args.getFirst());
                if (sub.isEmpty()) {
                    return (long) s.codePointCount(0, s.length()) + 1;
                }
                long n = 0;
                for (int i = s.indexOf(sub); i >= 0; i = s.indexOf(sub, i + sub.length())) {
                    n++;
                }
                return n;
            };
            case "format" -> (args, kwargs) -> PyFormat.braceFormat(s, args, kwargs);
            case "center", "ljust", "rjust" -> (args, kwargs) -> justify(s, name,
                    (int) Operators.toLong(args.getFirst(), name), args.size() > 1 ? PyValues.str(args.get(1)) : " ");
            case "zfill" -> (args, kwargs) -> {
                int width = (int) Operators.toLong(args.getFirst(), "zfill");
                int signed = !s.isEmpty() && (s.charAt(0) == '-' || s.charAt(0) == '+') ? 1 : 0;
                int pad = width - s.codePointCount(0, s.length());
                return pad <= 0 ? s : s.substring(0, signed) + "0".repeat(pad) + s.substring(signed);
            };
            case "partition", "rpartition" -> (args, kwargs) -> {
                String sep = PyValues.str(args.getFirst());
                int at = name.equals("partition") ? s.indexOf(sep) : s.lastIndexOf(sep);
                if (at < 0) {
                    return name.equals("partition") ? new Tuple(s, "", "") : new Tuple("", "", s);
                }
                return new Tuple(s.substring(0, at), sep, s.substring(at + sep.length()));
            };
            case "removeprefix" -> (args, kwargs) -> {
                String p = PyValues.str(args.getFirst());
                return s.startsWith(p) ? s.substring(p.length()) : s;
            };
            case "removesuffix" -> (args, kwargs) -> {
                String p = PyValues.str(args.getFirst());
                return !p.isEmpty() && s.endsWith(p) ? s.substring(0, s.length() - p.length()) : s;
            };
            case "expandtabs" -> (args, kwargs) -> expandTabs(s,
                    (int) Operators.toLong(Filters.arg(args, kwargs, 0, "tabsize", 8L), "expandtabs"));
            case "isdigit", "isnumeric", "isdecimal" -> (args, kwargs) -> !s.isEmpty()
                    && s.codePoints().allMatch(Character::isDigit);
            case "isalpha" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
            case "isalnum" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetterOrDigit);
            case "isspace" -> (args, kwargs) -> !s.isEmpty() && s.codePoints().allMatch(PyValues::isPySpace);
            case "islower" -> (args, kwargs) -> hasCased(s) && s.equals(s.toLowerCase(Locale.ROOT));
            case "isupper" -> (args, kwargs) -> hasCased(s) && s.equals(s.toUpperCase(Locale.ROOT));
            case "istitle" -> (args, kwargs) -> hasCased(s) && s.equals(TextFilters.pythonTitle(s));
            default -> null;
        };
    }

    private static boolean hasCased(String s) {
        return s.codePoints().anyMatch(cp -> Character.isUpperCase(cp) || Character.isLowerCase(cp)
                || Character.isTitleCase(cp));
    }

    private static String swapCase(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        s.codePoints().forEach(cp -> sb.append(Character.isUpperCase(cp)
                ? new String(Character.toChars(cp)).toLowerCase(Locale.ROOT)
                : new String(Character.toChars(cp)).toUpperCase(Locale.ROOT)));
        return sb.toString();
    }

    private static String justify(String s, String how, int width, String fill) {
        int pad = width - s.codePointCount(0, s.length());
        if (pad <= 0) {
            return s;
        }
        return switch (how) {
            case "ljust" -> s + fill.repeat(pad);
            case "rjust" -> fill.repeat(pad) + s;
            default -> {
                // CPython's str.center: the odd space goes left when the width is odd.
                int left = pad / 2 + (pad & width & 1);
                yield fill.repeat(left) + s + fill.repeat(pad - left);
            }
        };
    }

    private static String expandTabs(String s, int tabSize) {
        StringBuilder sb = new StringBuilder();
        int column = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\t') {
                int spaces = tabSize <= 0 ? 0 : tabSize - column % tabSize;
                sb.append(" ".repeat(spaces));
                column += spaces;
            } else {
                sb.append(c);
                column = c == '\n' || c == '\r' ? 0 : column + 1;
            }
        }
        return sb.toString();
    }

    private static String slice(String s, List<Object> args, int from) {
        return args.size() > from ? (String) Operators.slice(s, args.get(from), args.size() > from + 1
                ? args.get(from + 1) : null, null) : s;
    }

    private static int charIndex(String s, List<Object> args, int i) {
        if (args.size() <= i) {
            return 0;
        }
        long cp = Operators.toLong(args.get(i), "start");
        int n = s.codePointCount(0, s.length());
        cp = Math.max(0, Math.min(n, cp < 0 ? cp + n : cp));
        return s.offsetByCodePoints(0, (int) cp);
    }

    private static long codePointIndex(String s, int charIndex) {
        return charIndex < 0 ? -1 : s.codePointCount(0, charIndex);
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

    /** Python's str.split / str.rsplit. */
    static List<Object> split(String s, Object sep, Object maxsplitArg, boolean fromRight) {
        long maxsplit = Operators.toLong(maxsplitArg, "split");
        List<Object> out = new ArrayList<>();
        if (sep == null) {
            List<String> words = new ArrayList<>();
            List<int[]> spans = new ArrayList<>();
            int i = 0;
            int n = s.length();
            while (i < n) {
                while (i < n && PyValues.isPySpace(s.charAt(i))) {
                    i++;
                }
                int start = i;
                while (i < n && !PyValues.isPySpace(s.charAt(i))) {
                    i++;
                }
                if (i > start) {
                    words.add(s.substring(start, i));
                    spans.add(new int[] {start, i});
                }
            }
            if (maxsplit < 0 || words.size() <= maxsplit + 1) {
                out.addAll(words);
            } else if (!fromRight) {
                for (int k = 0; k < maxsplit; k++) {
                    out.add(words.get(k));
                }
                out.add(PyValues.strip(s.substring(spans.get((int) maxsplit)[0]), null, false, true));
            } else {
                int keep = words.size() - (int) maxsplit;
                out.add(PyValues.strip(s.substring(0, spans.get(keep - 1)[1]), null, true, false));
                for (int k = keep; k < words.size(); k++) {
                    out.add(words.get(k));
                }
            }
            return out;
        }
        String separator = PyValues.str(sep);
        if (separator.isEmpty()) {
            throw new IllegalArgumentException("empty separator");
        }
        if (!fromRight) {
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
        int end = s.length();
        List<Object> reversed = new ArrayList<>();
        while (maxsplit < 0 || reversed.size() < maxsplit) {
            int at = s.lastIndexOf(separator, end - separator.length());
            if (at < 0 || end - separator.length() < 0) {
                break;
            }
            reversed.add(s.substring(at + separator.length(), end));
            end = at;
        }
        reversed.add(s.substring(0, end));
        for (int k = reversed.size() - 1; k >= 0; k--) {
            out.add(reversed.get(k));
        }
        return out;
    }
}
