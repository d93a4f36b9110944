package ai.punica.jinja;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.AbstractList;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Python semantics for template values, which are plain Java objects: {@code null} is None,
 * {@link Boolean}, integral {@link Number}s are int, {@link Double}/{@link Float} are float,
 * {@link String}, {@link List} (a {@link Tuple} prints as one), {@link Map}, and
 * {@link Undefined} for missing variables. Python ints are unbounded: an int is a {@link Long}
 * while it fits and a {@link BigInteger} beyond (see {@link #integer(BigInteger)}). Jinja's
 * {@code Markup} (text already HTML-escaped) is a {@link Markup}.
 */
final class PyValues {
    private PyValues() {
    }

    /** Jinja's default Undefined: prints as "", is falsy, iterates as empty. */
    record Undefined(String name) {
        @Override
        public String toString() {
            return "";
        }
    }

    /** Jinja's Markup: a str that is already escaped, so escaping it again leaves it as is. */
    record Markup(String text) implements CharSequence {
        @Override
        public int length() {
            return text.length();
        }

        @Override
        public char charAt(int index) {
            return text.charAt(index);
        }

        @Override
        public CharSequence subSequence(int start, int end) {
            return text.subSequence(start, end);
        }

        @Override
        public String toString() {
            return text;
        }
    }

    /** An immutable Python tuple. */
    static class Tuple extends AbstractList<Object> {
        private final Object[] items;

        Tuple(Object... items) {
            this.items = items;
        }

        Tuple(List<?> items) {
            this.items = items.toArray();
        }

        @Override
        public Object get(int index) {
            return items[index];
        }

        @Override
        public int size() {
            return items.length;
        }
    }

    static boolean isIntegral(Object v) {
        return v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte
                || v instanceof java.math.BigInteger;
    }

    static boolean isNumber(Object v) {
        return v instanceof Number;
    }

    /** A Python int as the narrowest Java type: Long when it fits, else the BigInteger. */
    static Object integer(BigInteger v) {
        return v.bitLength() < 64 ? (Object) v.longValue() : v;
    }

    static BigInteger big(Object integral) {
        return integral instanceof BigInteger b ? b : BigInteger.valueOf(((Number) integral).longValue());
    }

    /** The text of a str or Markup value, else null. */
    static String text(Object v) {
        return v instanceof String s ? s : v instanceof Markup m ? m.text() : null;
    }

    static boolean truthy(Object v) {
        if (v == null || v instanceof Undefined) {
            return false;
        }
        if (v instanceof Boolean b) {
            return b;
        }
        if (v instanceof Number n) {
            return n instanceof BigInteger b ? b.signum() != 0
                    : isIntegral(n) ? n.longValue() != 0 : n.doubleValue() != 0.0;
        }
        if (v instanceof CharSequence s) {
            return !s.isEmpty();
        }
        if (v instanceof Collection<?> c) {
            return !c.isEmpty();
        }
        if (v instanceof Map<?, ?> m) {
            return !m.isEmpty();
        }
        return true;
    }

    /** Python's {@code str(v)} (Undefined renders as ""). */
    static String str(Object v) {
        if (v instanceof String s) {
            return s;
        }
        if (v instanceof Markup m) {
            return m.text();
        }
        if (v instanceof Undefined) {
            return "";
        }
        return repr(v);
    }

    /** Python's {@code repr(v)}. */
    static String repr(Object v) {
        StringBuilder sb = new StringBuilder();
        appendRepr(sb, v);
        return sb.toString();
    }

    private static void appendRepr(StringBuilder sb, Object v) {
        if (v == null) {
            sb.append("None");
        } else if (v instanceof Boolean b) {
            sb.append(b ? "True" : "False");
        } else if (v instanceof Double || v instanceof Float) {
            sb.append(floatRepr(((Number) v).doubleValue()));
        } else if (v instanceof Number n) {
            sb.append(n);
        } else if (v instanceof String s) {
            appendStringRepr(sb, s);
        } else if (v instanceof Markup m) {
            sb.append("Markup(");
            appendStringRepr(sb, m.text());
            sb.append(')');
        } else if (v instanceof Undefined) {
            sb.append("");
        } else if (v instanceof Tuple t) {
            sb.append('(');
            for (int i = 0; i < t.size(); i++) {
                if (i > 0) {
                    sb.append(", ");
                }
                appendRepr(sb, t.get(i));
            }
            sb.append(t.size() == 1 ? ",)" : ")");
        } else if (v instanceof List<?> list) {
            sb.append('[');
            for (int i = 0; i < list.size(); i++) {
                if (i > 0) {
                    sb.append(", ");
                }
                appendRepr(sb, list.get(i));
            }
            sb.append(']');
        } else if (v instanceof Map<?, ?> map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : map.entrySet()) {
                if (!first) {
                    sb.append(", ");
                }
                first = false;
                appendRepr(sb, e.getKey());
                sb.append(": ");
                appendRepr(sb, e.getValue());
            }
            sb.append('}');
        } else {
            sb.append(v);
        }
    }

    private static void appendStringRepr(StringBuilder sb, String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        sb.append(quote);
        Escapes.append(sb, s, c -> {
            if (c == quote) {
                return "\\" + c;
            }
            String backslash = Escapes.backslash(c);
            return backslash == null && (c < 0x20 || c == 0x7F) ? String.format("\\x%02x", (int) c) : backslash;
        });
        sb.append(quote);
    }

    /** Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
    static String floatRepr(double d) {
        if (Double.isNaN(d)) {
            return "nan";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "inf" : "-inf";
        }
        if (d == 0) {
            return (1 / d < 0) ? "-0.0" : "0.0";
        }
        BigDecimal bd = new BigDecimal(Double.toString(d)).stripTrailingZeros();
        String digits = bd.unscaledValue().abs().toString();
        int exponent = digits.length() - 1 - bd.scale();
        String sign = d < 0 ? "-" : "";
        if (exponent < -4 || exponent >= 16) {
            String mantissa = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
            return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + String.format("%02d", Math.abs(exponent));
        }
        if (exponent < 0) {
            return sign + "0." + "0".repeat(-exponent - 1) + digits;
        }
        if (digits.length() <= exponent + 1) {
            return sign + digits + "0".repeat(exponent + 1 - digits.length()) + ".0";
        }
        return sign + digits.substring(0, exponent + 1) + "." + digits.substring(exponent + 1);
    }

    /** Python's {@code ==}. */
    static boolean equal(Object a, Object b) {
        if (a == b) {
            return true;
        }
        if (a == null || b == null) {
            return false;
        }
        if (a instanceof Undefined || b instanceof Undefined) {
            return a instanceof Undefined && b instanceof Undefined;
        }
        if (a instanceof Number || a instanceof Boolean) {
            if (!(b instanceof Number || b instanceof Boolean)) {
                return false;
            }
            Object x = a instanceof Boolean ba ? (Object) (ba ? 1L : 0L) : a;
            Object y = b instanceof Boolean bb ? (Object) (bb ? 1L : 0L) : b;
            return compareNumbers((Number) x, (Number) y) == 0;
        }
        if (a instanceof CharSequence && b instanceof CharSequence) {
            return text(a) != null && text(a).equals(text(b));
        }
        if (a instanceof List<?> la && b instanceof List<?> lb) {
            if (la.size() != lb.size() || (a instanceof Tuple) != (b instanceof Tuple)) {
                return false;
            }
            for (int i = 0; i < la.size(); i++) {
                if (!equal(la.get(i), lb.get(i))) {
                    return false;
                }
            }
            return true;
        }
        if (a instanceof Map<?, ?> ma && b instanceof Map<?, ?> mb) {
            if (ma.size() != mb.size()) {
                return false;
            }
            for (Map.Entry<?, ?> e : ma.entrySet()) {
                if (!mb.containsKey(e.getKey()) || !equal(e.getValue(), mb.get(e.getKey()))) {
                    return false;
                }
            }
            return true;
        }
        return a.equals(b);
    }

    /** Python's ordering for numbers, strings and sequences; throws for other pairs. */
    static int compare(Object a, Object b) {
        if ((a instanceof Number || a instanceof Boolean) && (b instanceof Number || b instanceof Boolean)) {
            Object x = a instanceof Boolean ba ? (Object) (ba ? 1L : 0L) : a;
            Object y = b instanceof Boolean bb ? (Object) (bb ? 1L : 0L) : b;
            return compareNumbers((Number) x, (Number) y);
        }
        if (text(a) != null && text(b) != null) {
            return compareCodePoints(text(a), text(b));
        }
        if (a instanceof List<?> la && b instanceof List<?> lb) {
            for (int i = 0; i < Math.min(la.size(), lb.size()); i++) {
                if (!equal(la.get(i), lb.get(i))) {
                    return compare(la.get(i), lb.get(i));
                }
            }
            return Integer.compare(la.size(), lb.size());
        }
        throw new IllegalArgumentException("'<' not supported between instances of '" + typeName(a) + "' and '"
                + typeName(b) + "'");
    }

    private static int compareNumbers(Number x, Number y) {
        if (isIntegral(x) && isIntegral(y)) {
            return x instanceof BigInteger || y instanceof BigInteger ? big(x).compareTo(big(y))
                    : Long.compare(x.longValue(), y.longValue());
        }
        if (isIntegral(x) && x instanceof BigInteger bx) {
            return new BigDecimal(bx).compareTo(BigDecimal.valueOf(y.doubleValue()));
        }
        if (isIntegral(y) && y instanceof BigInteger by) {
            return BigDecimal.valueOf(x.doubleValue()).compareTo(new BigDecimal(by));
        }
        double dx = x.doubleValue();
        double dy = y.doubleValue();
        return dx == dy ? 0 : dx < dy ? -1 : 1;
    }

    private static int compareCodePoints(String a, String b) {
        Iterator<Integer> x = a.codePoints().iterator();
        Iterator<Integer> y = b.codePoints().iterator();
        while (x.hasNext() && y.hasNext()) {
            int c = Integer.compare(x.next(), y.next());
            if (c != 0) {
                return c;
            }
        }
        return Boolean.compare(x.hasNext(), y.hasNext());
    }

    static String typeName(Object v) {
        return switch (v) {
            case null -> "NoneType";
            case Undefined u -> "Undefined";
            case Boolean b -> "bool";
            case Number n -> isIntegral(n) ? "int" : "float";
            case String t -> "str";
            case Markup m -> "Markup";
            case Tuple t -> "tuple";
            case List<?> l -> "list";
            case Map<?, ?> m -> "dict";
            default -> v.getClass().getSimpleName();
        };
    }

    /** Python's {@code len(v)} (0 for Undefined). */
    static int length(Object v) {
        if (v instanceof CharSequence s) {
            return Character.codePointCount(s, 0, s.length());
        }
        if (v instanceof Collection<?> c) {
            return c.size();
        }
        if (v instanceof Map<?, ?> m) {
            return m.size();
        }
        if (v instanceof Undefined) {
            return 0;
        }
        throw new IllegalArgumentException("object of type '" + typeName(v) + "' has no len()");
    }

    /** The items a for loop visits: list elements, dict keys, string characters; nothing for Undefined. */
    static List<Object> iterate(Object v) {
        if (v instanceof List<?> list) {
            return new ArrayList<>(list);
        }
        if (v instanceof Map<?, ?> map) {
            return new ArrayList<>(map.keySet());
        }
        if (v instanceof Collection<?> c) {
            return new ArrayList<>(c);
        }
        if (v instanceof CharSequence s) {
            List<Object> chars = new ArrayList<>();
            s.codePoints().forEach(cp -> chars.add(new String(Character.toChars(cp))));
            return chars;
        }
        if (v instanceof Undefined) {
            return new ArrayList<>();
        }
        throw new IllegalArgumentException("'" + typeName(v) + "' object is not iterable");
    }

    /** Python's {@code str.isspace()} character test. */
    static boolean isPySpace(int cp) {
        return Character.isWhitespace(cp) || Character.isSpaceChar(cp) || cp == 0x85 || (cp >= 0x1C && cp <= 0x1F);
    }

    static String strip(String s, String chars, boolean left, boolean right) {
        int start = 0;
        int end = s.length();
        while (left && start < end && (chars == null ? isPySpace(s.charAt(start)) : chars.indexOf(s.charAt(start)) >= 0)) {
            start++;
        }
        while (right && end > start && (chars == null ? isPySpace(s.charAt(end - 1)) : chars.indexOf(s.charAt(end - 1)) >= 0)) {
            end--;
        }
        return s.substring(start, end);
    }

    /** Python's {@code str.splitlines()}. */
    static List<String> splitLines(String s) {
        return splitLines(s, false);
    }

    /** Python's {@code str.splitlines(keepends)}. */
    static List<String> splitLines(String s, boolean keepEnds) {
        List<String> lines = new ArrayList<>();
        int start = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            boolean lineBreak = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E)
                    || c == 0x85 || c == 0x2028 || c == 0x2029;
            if (lineBreak) {
                int lineEnd = i;
                if (c == '\r' && i + 1 < s.length() && s.charAt(i + 1) == '\n') {
                    i++;
                }
                lines.add(s.substring(start, keepEnds ? i + 1 : lineEnd));
                start = i + 1;
            }
        }
        if (start < s.length()) {
            lines.add(s.substring(start));
        }
        return lines;
    }
}
