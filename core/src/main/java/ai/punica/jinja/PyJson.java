package ai.punica.jinja;

import ai.punica.jinja.PyValues.Undefined;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Python's {@code json.dumps}, as transformers' {@code tojson} filter calls it. */
final class PyJson {
    private PyJson() {
    }

    /** Python's {@code json.dumps} (as HF's tojson calls it: ensure_ascii=False unless asked). */
    static String toJson(Object v, Integer indent, boolean ensureAscii, String itemSeparator, String keySeparator,
            boolean sortKeys) {
        StringBuilder sb = new StringBuilder();
        appendJson(sb, v, indent, 0, ensureAscii,
                itemSeparator != null ? itemSeparator : indent != null ? "," : ", ",
                keySeparator != null ? keySeparator : ": ", sortKeys);
        return sb.toString();
    }

    private static void appendJson(StringBuilder sb, Object v, Integer indent, int level, boolean ascii, String itemSep,
            String keySep, boolean sortKeys) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Boolean b) {
            sb.append(b ? "true" : "false");
        } else if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            sb.append(Double.isNaN(d) ? "NaN" : Double.isInfinite(d) ? (d > 0 ? "Infinity" : "-Infinity")
                    : PyValues.floatRepr(d));
        } else if (v instanceof Number n) {
            sb.append(n);
        } else if (v instanceof CharSequence s) {
            appendJsonString(sb, s.toString(), ascii);
        } else if (v instanceof List<?> list) {
            if (list.isEmpty()) {
                sb.append("[]");
                return;
            }
            sb.append('[');
            for (int i = 0; i < list.size(); i++) {
                if (i > 0) {
                    sb.append(itemSep);
                }
                newline(sb, indent, level + 1);
                appendJson(sb, list.get(i), indent, level + 1, ascii, itemSep, keySep, sortKeys);
            }
            newline(sb, indent, level);
            sb.append(']');
        } else if (v instanceof Map<?, ?> map) {
            if (map.isEmpty()) {
                sb.append("{}");
                return;
            }
            List<Map.Entry<?, ?>> entries = new ArrayList<>(map.entrySet());
            if (sortKeys) {
                entries.sort((x, y) -> PyValues.compare(String.valueOf(x.getKey()), String.valueOf(y.getKey())));
            }
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : entries) {
                if (!first) {
                    sb.append(itemSep);
                }
                first = false;
                newline(sb, indent, level + 1);
                Object key = e.getKey();
                appendJsonString(sb, key instanceof String s ? s : key == null ? "null" : jsonKey(key), ascii);
                sb.append(keySep);
                appendJson(sb, e.getValue(), indent, level + 1, ascii, itemSep, keySep, sortKeys);
            }
            newline(sb, indent, level);
            sb.append('}');
        } else if (v instanceof Undefined u) {
            throw new IllegalArgumentException("Object of type Undefined is not JSON serializable"
                    + (u.name() == null ? "" : " ('" + u.name() + "' is undefined)"));
        } else {
            throw new IllegalArgumentException("Object of type " + PyValues.typeName(v) + " is not JSON serializable");
        }
    }

    private static String jsonKey(Object key) {
        if (key instanceof Boolean b) {
            return b ? "true" : "false";
        }
        return PyValues.repr(key);
    }

    private static void newline(StringBuilder sb, Integer indent, int level) {
        if (indent != null) {
            sb.append('\n').append(" ".repeat(indent * level));
        }
    }

    private static void appendJsonString(StringBuilder sb, String s, boolean ascii) {
        sb.append('"');
        Escapes.append(sb, s, c -> switch (c) {
            case '"' -> "\\\"";
            case '\b' -> "\\b";
            case '\f' -> "\\f";
            case '\\', '\n', '\r', '\t' -> Escapes.backslash(c);
            default -> c < 0x20 || (ascii && c > 0x7F) ? String.format("\\u%04x", (int) c) : null;
        });
        sb.append('"');
    }

}
