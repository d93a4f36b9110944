package ai.punica.jinja;

import ai.punica.jinja.PyValues.Undefined;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Python's string formatting: {@code "%s" % args} (printf style) and {@code str.format} with the
 * format-spec mini-language ({@code [[fill]align][sign][#][0][width][,|_][.precision][type]}).
 * Rounding is Python's: the exact binary value of a float, rounded half to even.
 */
final class PyFormat {
    private static final Pattern PERCENT =
            Pattern.compile("%(?:\\(([^)]*)\\))?([-+ 0#]*)(\\*|\\d*)(?:\\.(\\*|\\d*))?[hlL]?([diouxXeEfFgGcrsa%])");
    private static final Pattern SPEC =
            Pattern.compile("(?:(.)?([<>=^]))?([-+ ])?(#)?(0)?(\\d+)?([,_])?(?:\\.(\\d+))?([bcdeEfFgGnosxX%])?");

    private PyFormat() {
    }

    /** {@code format % args}: {@code args} the tuple items, or one value; {@code right} the operand as given. */
    static String percent(String format, List<?> args, Object right) {
        Matcher m = PERCENT.matcher(format);
        StringBuilder sb = new StringBuilder();
        int next = 0;
        int last = 0;
        while (m.find()) {
            sb.append(format, last, m.start());
            last = m.end();
            String conversion = m.group(5);
            if (conversion.equals("%")) {
                sb.append('%');
                continue;
            }
            Object value;
            if (m.group(1) != null) {
                if (!(right instanceof Map<?, ?> map)) {
                    throw new IllegalArgumentException("format requires a mapping");
                }
                if (!map.containsKey(m.group(1))) {
                    throw new IllegalArgumentException("KeyError: '" + m.group(1) + "'");
                }
                value = map.get(m.group(1));
            } else {
                if (next >= args.size()) {
                    throw new IllegalArgumentException("not enough arguments for format string");
                }
                value = args.get(next++);
            }
            String flags = m.group(2);
            Spec spec = new Spec(flags.contains("0") && !flags.contains("-") ? '0' : ' ',
                    flags.contains("-") ? '<' : '>', flags.contains("+") ? '+' : flags.contains(" ") ? ' ' : '-',
                    flags.contains("#"), flags.contains("0") && !flags.contains("-"),
                    m.group(3).isEmpty() ? -1 : Integer.parseInt(m.group(3)), null,
                    m.group(4) == null ? -1 : m.group(4).isEmpty() ? 0 : Integer.parseInt(m.group(4)), conversion);
            sb.append(percentConversion(value, spec));
        }
        if (next < args.size() && !(right instanceof Map<?, ?>)) {
            throw new IllegalArgumentException("not all arguments converted during string formatting");
        }
        sb.append(format, last, format.length());
        return sb.toString();
    }

    private static String percentConversion(Object value, Spec spec) {
        return switch (spec.type) {
            case "s" -> pad(PyValues.str(value), spec, '<');
            case "r", "a" -> pad(PyValues.repr(value), spec, '<');
            case "c" -> pad(value instanceof String s ? s : new String(Character.toChars(
                    (int) Operators.toLong(value, "%c"))), spec, '<');
            case "d", "i", "u" -> number(integerOf(value, "%" + spec.type), spec.withType("d"));
            case "o", "x", "X" -> number(integerOf(value, "%" + spec.type), spec);
            default -> number(floatOf(value, "%" + spec.type), spec);
        };
    }

    private static Object integerOf(Object value, String what) {
        if (value instanceof Boolean b) {
            return b ? 1L : 0L;
        }
        if (PyValues.isIntegral(value)) {
            return value;
        }
        if (value instanceof Number n) {
            return PyValues.integer(new BigDecimal(n.doubleValue()).toBigInteger());
        }
        throw new IllegalArgumentException(what + " format: a real number is required, not " + PyValues.typeName(value));
    }

    private static double floatOf(Object value, String what) {
        if (value instanceof Number || value instanceof Boolean) {
            return value instanceof Boolean b ? (b ? 1 : 0) : ((Number) value).doubleValue();
        }
        throw new IllegalArgumentException(what + " format: a real number is required, not " + PyValues.typeName(value));
    }

    /** {@code str.format(*args, **kwargs)}. */
    static String braceFormat(String format, List<Object> args, Map<String, Object> kwargs) {
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
            } else if (c == '}') {
                throw new IllegalArgumentException("Single '}' encountered in format string");
            } else if (c == '{') {
                int close = fieldEnd(format, i);
                String field = format.substring(i + 1, close);
                String spec = "";
                char conversion = 0;
                int colon = field.indexOf(':');
                if (colon >= 0) {
                    spec = field.substring(colon + 1);
                    field = field.substring(0, colon);
                }
                int bang = field.indexOf('!');
                if (bang >= 0) {
                    conversion = bang + 1 < field.length() ? field.charAt(bang + 1) : 0;
                    field = field.substring(0, bang);
                }
                if (spec.contains("{")) {
                    spec = braceFormat(spec, args, kwargs);
                }
                String head = field.split("[.\\[]", 2)[0];
                Object value;
                if (head.isEmpty()) {
                    if (auto >= args.size()) {
                        throw new IllegalArgumentException("Replacement index " + auto + " out of range for positional "
                                + "args tuple");
                    }
                    value = args.get(auto++);
                } else if (head.chars().allMatch(Character::isDigit)) {
                    int index = Integer.parseInt(head);
                    if (index >= args.size()) {
                        throw new IllegalArgumentException("Replacement index " + index + " out of range for "
                                + "positional args tuple");
                    }
                    value = args.get(index);
                } else {
                    if (!kwargs.containsKey(head)) {
                        throw new IllegalArgumentException("KeyError: '" + head + "'");
                    }
                    value = kwargs.get(head);
                }
                value = lookupPath(value, field.substring(head.length()));
                if (conversion == 'r' || conversion == 'a') {
                    value = PyValues.repr(value);
                } else if (conversion == 's') {
                    value = PyValues.str(value);
                }
                sb.append(formatValue(value, spec));
                i = close;
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    private static int fieldEnd(String format, int open) {
        int depth = 0;
        for (int i = open + 1; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c == '{') {
                depth++;
            } else if (c == '}') {
                if (depth == 0) {
                    return i;
                }
                depth--;
            }
        }
        throw new IllegalArgumentException("expected '}' before end of string");
    }

    /** {@code .attr} and {@code [key]} parts of a replacement field. */
    private static Object lookupPath(Object value, String path) {
        int i = 0;
        while (i < path.length()) {
            if (path.charAt(i) == '.') {
                int end = i + 1;
                while (end < path.length() && path.charAt(end) != '.' && path.charAt(end) != '[') {
                    end++;
                }
                value = Renderer.getAttribute(value, path.substring(i + 1, end));
                i = end;
            } else if (path.charAt(i) == '[') {
                int end = path.indexOf(']', i);
                if (end < 0) {
                    throw new IllegalArgumentException("Missing ']' in format string");
                }
                String key = path.substring(i + 1, end);
                value = Renderer.getItem(value, key.chars().allMatch(Character::isDigit) && !key.isEmpty()
                        ? (Object) Long.parseLong(key) : key);
                i = end + 1;
            } else {
                throw new IllegalArgumentException("Only '.' or '[' may follow ']' in format field specifier");
            }
            if (value instanceof Undefined u) {
                throw new IllegalArgumentException("no attribute or item '" + u.name() + "' in format field");
            }
        }
        return value;
    }

    /** {@code format(value, spec)}. */
    static String formatValue(Object value, String specText) {
        Matcher m = SPEC.matcher(specText);
        if (!m.matches()) {
            throw new IllegalArgumentException("Invalid format specifier '" + specText + "' for object of type '"
                    + PyValues.typeName(value) + "'");
        }
        String align = m.group(2);
        boolean zero = m.group(5) != null;
        char fill = m.group(1) != null ? m.group(1).charAt(0) : zero && align == null ? '0' : ' ';
        Spec spec = new Spec(fill, align == null ? (zero && !(PyValues.text(value) != null) ? '=' : 0) : align.charAt(0),
                m.group(3) == null ? '-' : m.group(3).charAt(0), m.group(4) != null, zero,
                m.group(6) == null ? -1 : Integer.parseInt(m.group(6)), m.group(7),
                m.group(8) == null ? -1 : Integer.parseInt(m.group(8)), m.group(9) == null ? "" : m.group(9));
        if (PyValues.text(value) != null || value == null || value instanceof Undefined || value instanceof List
                || value instanceof Map) {
            if (!spec.type.isEmpty() && !spec.type.equals("s")) {
                throw new IllegalArgumentException("Unknown format code '" + spec.type + "' for object of type '"
                        + PyValues.typeName(value) + "'");
            }
            String s = PyValues.str(value);
            if (spec.precision >= 0) {
                s = s.substring(0, s.offsetByCodePoints(0, Math.min(spec.precision, s.codePointCount(0, s.length()))));
            }
            return pad(s, spec, '<');
        }
        if (value instanceof Boolean b && spec.type.isEmpty()) {
            return pad(b ? "True" : "False", spec, '<');
        }
        if (spec.type.equals("c")) {
            return pad(new String(Character.toChars((int) Operators.toLong(value, "format 'c'"))), spec, '<');
        }
        if (PyValues.isIntegral(value) || value instanceof Boolean) {
            Object integer = integerOf(value, "format");
            if ("eEfFgG%".contains(spec.type) && !spec.type.isEmpty()) {
                return number(((Number) integer).doubleValue(), spec);
            }
            return number(integer, spec.type.isEmpty() || spec.type.equals("n") ? spec.withType("d") : spec);
        }
        if ("bcdoxX".contains(spec.type) && !spec.type.isEmpty()) {
            throw new IllegalArgumentException("Unknown format code '" + spec.type + "' for object of type 'float'");
        }
        return number(((Number) value).doubleValue(), spec);
    }

    /** A parsed format spec; {@code align} 0 means the type's default. */
    private record Spec(char fill, char align, char sign, boolean alternate, boolean zero, int width,
            String grouping, int precision, String type) {
        Spec withType(String t) {
            return new Spec(fill, align, sign, alternate, zero, width, grouping, precision, t);
        }
    }

    private static String number(Object value, Spec spec) {
        boolean negative;
        String digits;
        String prefix = "";
        if (value instanceof Double d) {
            negative = d < 0 || (d == 0 && 1 / d < 0);
            digits = floatDigits(Math.abs(d), spec);
        } else {
            BigInteger n = PyValues.big(value);
            negative = n.signum() < 0;
            n = n.abs();
            switch (spec.type) {
                case "x", "X" -> {
                    digits = n.toString(16);
                    digits = spec.type.equals("X") ? digits.toUpperCase(Locale.ROOT) : digits;
                    prefix = spec.alternate ? (spec.type.equals("X") ? "0X" : "0x") : "";
                }
                case "o" -> {
                    digits = n.toString(8);
                    prefix = spec.alternate ? "0o" : "";
                }
                case "b" -> {
                    digits = n.toString(2);
                    prefix = spec.alternate ? "0b" : "";
                }
                default -> digits = n.toString();
            }
            if (spec.grouping != null) {
                digits = group(digits, spec.grouping.charAt(0), spec.type.equals("d") ? 3 : 4);
            }
        }
        String sign = negative ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
        String body = prefix + digits;
        char align = spec.align == 0 ? '>' : spec.align;
        if (align == '=' || (spec.zero && spec.align == 0)) {
            int padding = spec.width - sign.length() - body.length();
            char fill = spec.align == 0 ? '0' : spec.fill;
            return sign + (padding > 0 ? String.valueOf(fill).repeat(padding) : "") + body;
        }
        return pad(sign + body, new Spec(spec.fill, align, spec.sign, false, false, spec.width, null, -1, ""), '>');
    }

    private static String floatDigits(double d, Spec spec) {
        if (Double.isNaN(d)) {
            return spec.type.equals("F") || spec.type.equals("E") || spec.type.equals("G") ? "NAN" : "nan";
        }
        if (Double.isInfinite(d)) {
            return spec.type.equals("F") || spec.type.equals("E") || spec.type.equals("G") ? "INF" : "inf";
        }
        String out = switch (spec.type) {
            case "f", "F" -> fixed(d, spec.precision < 0 ? 6 : spec.precision);
            case "e", "E" -> scientific(d, spec.precision < 0 ? 6 : spec.precision);
            case "%" -> fixed(d * 100, spec.precision < 0 ? 6 : spec.precision) + "%";
            case "g", "G" -> general(d, spec.precision < 0 ? 6 : Math.max(1, spec.precision), spec.alternate);
            default -> spec.precision < 0 ? PyValues.floatRepr(d)
                    : general(d, Math.max(1, spec.precision), false).replaceAll("^(\\d+)$", "$1.0");
        };
        if (spec.type.equals("E") || spec.type.equals("G")) {
            out = out.toUpperCase(Locale.ROOT);
        }
        if (spec.grouping != null) {
            int dot = out.indexOf('.');
            int end = dot >= 0 ? dot : out.indexOf('e') >= 0 ? out.indexOf('e') : out.length();
            String whole = out.substring(0, end);
            if (whole.chars().allMatch(Character::isDigit)) {
                out = group(whole, spec.grouping.charAt(0), 3) + out.substring(end);
            }
        }
        return out;
    }

    static String fixed(double d, int precision) {
        return new BigDecimal(d).setScale(precision, RoundingMode.HALF_EVEN).toPlainString();
    }

    static String scientific(double d, int precision) {
        if (d == 0) {
            return "0" + (precision > 0 ? "." + "0".repeat(precision) : "") + "e+00";
        }
        BigDecimal rounded = new BigDecimal(d).round(new MathContext(precision + 1, RoundingMode.HALF_EVEN));
        String unscaled = rounded.unscaledValue().abs().toString();
        int exponent = unscaled.length() - 1 - rounded.scale();
        unscaled = (unscaled + "0".repeat(precision + 1)).substring(0, precision + 1);
        String mantissa = precision > 0 ? unscaled.charAt(0) + "." + unscaled.substring(1) : unscaled;
        return mantissa + "e" + (exponent < 0 ? "-" : "+") + String.format("%02d", Math.abs(exponent));
    }

    /** The 'g' presentation: fixed or scientific by the exponent, trailing zeros removed unless '#'. */
    private static String general(double d, int precision, boolean keepZeros) {
        if (d == 0) {
            return keepZeros ? "0." + "0".repeat(Math.max(0, precision - 1)) : "0";
        }
        BigDecimal rounded = new BigDecimal(d).round(new MathContext(precision, RoundingMode.HALF_EVEN));
        int exponent = rounded.precision() - 1 - rounded.scale();
        String out = exponent >= -4 && exponent < precision ? fixed(d, precision - 1 - exponent)
                : scientific(d, precision - 1);
        if (!keepZeros) {
            out = out.replaceAll("(\\.\\d*?)0+(e|$)", "$1$2").replaceAll("\\.(e|$)", "$1");
        }
        return out;
    }

    private static String group(String digits, char separator, int size) {
        StringBuilder sb = new StringBuilder();
        int first = digits.length() % size == 0 ? size : digits.length() % size;
        sb.append(digits, 0, first);
        for (int i = first; i < digits.length(); i += size) {
            sb.append(separator).append(digits, i, i + size);
        }
        return sb.toString();
    }

    private static String pad(String s, Spec spec, char defaultAlign) {
        int length = s.codePointCount(0, s.length());
        if (spec.width <= length) {
            return s;
        }
        int padding = spec.width - length;
        String fill = String.valueOf(spec.fill);
        return switch (spec.align == 0 || spec.align == '=' ? defaultAlign : spec.align) {
            case '<' -> s + fill.repeat(padding);
            case '^' -> fill.repeat(padding / 2) + s + fill.repeat(padding - padding / 2);
            default -> fill.repeat(padding) + s;
        };
    }
}
