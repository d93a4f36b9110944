package ai.punica.jinja;

import ai.punica.jinja.PyValues.Markup;
import ai.punica.jinja.PyValues.Tuple;
import ai.punica.jinja.PyValues.Undefined;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Python's binary and unary operators, comparisons, {@code in}, indexing and slicing on template
 * values. Integers never overflow: a result that leaves the long range becomes a BigInteger, as a
 * Python int would.
 */
final class Operators {
    /** Bits a {@code **} result may have; Python has no bound, a template never needs more. */
    static final int MAX_POWER_BITS = 1 << 16;

    private Operators() {
    }

    static Object arithmetic(String op, Object l, Object r) {
        if (op.equals("~")) {
            return PyValues.str(l) + PyValues.str(r);
        }
        if (l instanceof Undefined u) {
            throw undefinedOperand(u);
        }
        if (r instanceof Undefined u) {
            throw undefinedOperand(u);
        }
        if (op.equals("+")) {
            Object joined = concat(l, r);
            if (joined != null) {
                return joined;
            }
        }
        if (op.equals("*")) {
            Object repeated = repeat(l, r);
            if (repeated == null) {
                repeated = repeat(r, l);
            }
            if (repeated != null) {
                return repeated;
            }
        }
        if (op.equals("%") && PyValues.text(l) != null) {
            List<?> args = r instanceof Tuple t ? t : List.of(r);
            if (l instanceof Markup m) {
                return new Markup(PyFormat.percent(m.text(), args.stream().map(Operators::escapeArgument).toList(), r));
            }
            return PyFormat.percent(PyValues.text(l), args, r);
        }
        if (!isNumeric(l) || !isNumeric(r)) {
            throw new IllegalArgumentException("unsupported operand type(s) for " + op + ": '" + PyValues.typeName(l)
                    + "' and '" + PyValues.typeName(r) + "'");
        }
        Number a = asNumber(l);
        Number c = asNumber(r);
        if (PyValues.isIntegral(a) && PyValues.isIntegral(c)) {
            return integerArithmetic(op, a, c);
        }
        double x = a.doubleValue();
        double y = c.doubleValue();
        switch (op) {
            case "+" -> {
                return x + y;
            }
            case "-" -> {
                return x - y;
            }
            case "*" -> {
                return x * y;
            }
            case "/" -> {
                requireNonZero(y, "float division by zero");
                return x / y;
            }
            case "//" -> {
                requireNonZero(y, "float floor division by zero");
                return Math.floor(x / y);
            }
            case "%" -> {
                requireNonZero(y, "float modulo");
                double m = x % y;
                return m != 0 && (m < 0) != (y < 0) ? m + y : m;
            }
            case "**" -> {
                double p = Math.pow(x, y);
                if (Double.isInfinite(p) && !Double.isInfinite(x) && !Double.isInfinite(y)) {
                    throw new IllegalArgumentException("(34, 'Numerical result out of range')");
                }
                if (Double.isNaN(p) && x < 0 && !Double.isNaN(y)) {
                    throw new IllegalArgumentException("a negative number cannot be raised to a fractional power "
                            + "(Python would give a complex number)");
                }
                return p;
            }
            default -> throw new IllegalArgumentException("unknown operator " + op);
        }
    }

    private static Object integerArithmetic(String op, Number a, Number c) {
        if (!(a instanceof BigInteger) && !(c instanceof BigInteger)) {
            long x = a.longValue();
            long y = c.longValue();
            try {
                switch (op) {
                    case "+" -> {
                        return Math.addExact(x, y);
                    }
                    case "-" -> {
                        return Math.subtractExact(x, y);
                    }
                    case "*" -> {
                        return Math.multiplyExact(x, y);
                    }
                    case "/" -> {
                        requireNonZero(y, "division by zero");
                        return (double) x / (double) y;
                    }
                    case "//" -> {
                        requireNonZero(y, "integer division or modulo by zero");
                        if (x != Long.MIN_VALUE || y != -1) {
                            return Math.floorDiv(x, y);
                        }
                    }
                    case "%" -> {
                        requireNonZero(y, "integer division or modulo by zero");
                        return Math.floorMod(x, y);
                    }
                    default -> {
                    }
                }
            } catch (ArithmeticException overflow) {
                // fall through to BigInteger
            }
        }
        BigInteger x = PyValues.big(a);
        BigInteger y = PyValues.big(c);
        return switch (op) {
            case "+" -> PyValues.integer(x.add(y));
            case "-" -> PyValues.integer(x.subtract(y));
            case "*" -> PyValues.integer(x.multiply(y));
            case "/" -> {
                requireNonZero(y.signum(), "division by zero");
                yield new java.math.BigDecimal(x).divide(new java.math.BigDecimal(y), java.math.MathContext.DECIMAL64)
                        .doubleValue();
            }
            case "//" -> {
                requireNonZero(y.signum(), "integer division or modulo by zero");
                BigInteger[] qr = x.divideAndRemainder(y);
                yield PyValues.integer(qr[1].signum() != 0 && qr[1].signum() != y.signum()
                        ? qr[0].subtract(BigInteger.ONE) : qr[0]);
            }
            case "%" -> {
                requireNonZero(y.signum(), "integer division or modulo by zero");
                BigInteger m = x.mod(y.abs());
                yield PyValues.integer(y.signum() < 0 && m.signum() != 0 ? m.add(y) : m);
            }
            case "**" -> power(x, y);
            default -> throw new IllegalArgumentException("unknown operator " + op);
        };
    }

    private static Object power(BigInteger base, BigInteger exponent) {
        if (exponent.signum() < 0) {
            return Math.pow(base.doubleValue(), exponent.doubleValue());
        }
        if (base.abs().compareTo(BigInteger.ONE) <= 0) {
            return PyValues.integer(base.signum() < 0 && exponent.testBit(0) ? base
                    : base.signum() == 0 ? (exponent.signum() == 0 ? BigInteger.ONE : BigInteger.ZERO) : BigInteger.ONE);
        }
        if (exponent.bitLength() > 31 || (long) base.bitLength() * exponent.intValue() > MAX_POWER_BITS) {
            throw new IllegalArgumentException("integer result of " + base + " ** " + exponent + " would have more "
                    + "than " + MAX_POWER_BITS + " bits; chat templates are limited to smaller numbers");
        }
        return PyValues.integer(base.pow(exponent.intValue()));
    }

    private static Object concat(Object l, Object r) {
        if (l instanceof Markup m && PyValues.text(r) != null) {
            return new Markup(m.text() + escapeArgument(r));
        }
        if (r instanceof Markup m && PyValues.text(l) != null) {
            return new Markup(escapeArgument(l) + m.text());
        }
        if (l instanceof String a && r instanceof String c) {
            return a + c;
        }
        if (l instanceof List<?> a && r instanceof List<?> c && (l instanceof Tuple) == (r instanceof Tuple)) {
            List<Object> joined = new ArrayList<>(a);
            joined.addAll(c);
            return l instanceof Tuple ? new Tuple(joined) : joined;
        }
        return null;
    }

    private static Object repeat(Object sequence, Object times) {
        if (!PyValues.isIntegral(times) || !(PyValues.text(sequence) != null || sequence instanceof List)) {
            return null;
        }
        long n = Math.max(0, PyValues.big(times).min(BigInteger.valueOf(Integer.MAX_VALUE)).longValue());
        long size = (long) PyValues.length(sequence) * n;
        if (size > Limits.MAX_VALUE_LENGTH) {
            throw new IllegalArgumentException("repeating a " + PyValues.typeName(sequence) + " " + n + " times gives "
                    + size + " items; chat templates are limited to " + Limits.MAX_VALUE_LENGTH);
        }
        if (sequence instanceof List<?> list) {
            List<Object> repeated = new ArrayList<>();
            for (long i = 0; i < n; i++) {
                repeated.addAll(list);
            }
            return sequence instanceof Tuple ? new Tuple(repeated) : repeated;
        }
        String repeated = PyValues.text(sequence).repeat((int) n);
        return sequence instanceof Markup ? new Markup(repeated) : repeated;
    }

    /** Markup's rule for mixing: the plain-text side is escaped, Markup stays as it is. */
    static String escapeArgument(Object v) {
        return v instanceof Markup m ? m.text() : TextFilters.escapeHtml(PyValues.str(v));
    }

    private static void requireNonZero(double divisor, String message) {
        if (divisor == 0) {
            throw new IllegalArgumentException(message);
        }
    }

    private static IllegalArgumentException undefinedOperand(Undefined u) {
        return new IllegalArgumentException(u.name() == null ? "undefined value used in an operation"
                : "'" + u.name() + "' is undefined");
    }

    static boolean isNumeric(Object v) {
        return v instanceof Number || v instanceof Boolean;
    }

    private static Number asNumber(Object v) {
        return v instanceof Boolean b ? (Number) (b ? 1L : 0L) : (Number) v;
    }

    static Object negate(Object v) {
        requireNumber(v, "-");
        Number n = asNumber(v);
        if (n instanceof BigInteger || Long.valueOf(Long.MIN_VALUE).equals(n)) {
            return PyValues.integer(PyValues.big(n).negate());
        }
        return PyValues.isIntegral(n) ? (Object) (-n.longValue()) : -n.doubleValue();
    }

    static Object plus(Object v) {
        requireNumber(v, "+");
        return v instanceof Boolean b ? (Object) (b ? 1L : 0L) : v;
    }

    private static void requireNumber(Object v, String op) {
        if (!isNumeric(v)) {
            throw new IllegalArgumentException("bad operand type for unary " + op + ": '" + PyValues.typeName(v) + "'");
        }
    }

    static boolean compare(String op, Object l, Object r) {
        return switch (op) {
            case "==" -> PyValues.equal(l, r);
            case "!=" -> !PyValues.equal(l, r);
            case "<" -> ordered(l, r, op) < 0;
            case ">" -> ordered(l, r, op) > 0;
            case "<=" -> ordered(l, r, op) <= 0;
            case ">=" -> ordered(l, r, op) >= 0;
            case "in" -> contains(r, l);
            case "not in" -> !contains(r, l);
            default -> throw new IllegalArgumentException("unknown comparison " + op);
        };
    }

    private static int ordered(Object l, Object r, String op) {
        try {
            return PyValues.compare(l, r);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("'" + op + "' not supported between instances of '"
                    + PyValues.typeName(l) + "' and '" + PyValues.typeName(r) + "'");
        }
    }

    static boolean contains(Object container, Object item) {
        if (PyValues.text(container) != null) {
            if (PyValues.text(item) == null) {
                throw new IllegalArgumentException("'in <string>' requires string as left operand, not "
                        + PyValues.typeName(item));
            }
            return PyValues.text(container).contains(PyValues.text(item));
        }
        if (container instanceof List<?> list) {
            for (Object o : list) {
                if (PyValues.equal(o, item)) {
                    return true;
                }
            }
            return false;
        }
        if (container instanceof Map<?, ?> map) {
            return map.containsKey(item) || (item instanceof Long l && map.containsKey(l.intValue()));
        }
        if (container instanceof Undefined) {
            return false;
        }
        throw new IllegalArgumentException("argument of type '" + PyValues.typeName(container) + "' is not iterable");
    }

    static Object slice(Object target, Object start, Object stop, Object step) {
        if (target instanceof Undefined) {
            return target;
        }
        List<Object> items;
        if (PyValues.text(target) != null) {
            items = PyValues.iterate(target);
        } else if (target instanceof List<?> list) {
            items = new ArrayList<>(list);
        } else {
            throw new IllegalArgumentException("'" + PyValues.typeName(target) + "' object is not subscriptable");
        }
        int n = items.size();
        long st = step == null ? 1 : toLong(step, "slice step");
        if (st == 0) {
            throw new IllegalArgumentException("slice step cannot be zero");
        }
        long lo;
        long hi;
        if (st > 0) {
            lo = start == null ? 0 : clampIndex(toLong(start, "slice"), n, 0, n);
            hi = stop == null ? n : clampIndex(toLong(stop, "slice"), n, 0, n);
        } else {
            lo = start == null ? n - 1 : clampIndex(toLong(start, "slice"), n, -1, n - 1);
            hi = stop == null ? -1 : clampIndex(toLong(stop, "slice"), n, -1, n - 1);
        }
        List<Object> out = new ArrayList<>();
        for (long i = lo; st > 0 ? i < hi : i > hi; i += st) {
            out.add(items.get((int) i));
        }
        if (PyValues.text(target) != null) {
            StringBuilder sb = new StringBuilder();
            out.forEach(sb::append);
            return target instanceof Markup ? new Markup(sb.toString()) : sb.toString();
        }
        return target instanceof Tuple ? new Tuple(out) : out;
    }

    private static long clampIndex(long i, int n, long min, long max) {
        if (i < 0) {
            i += n;
        }
        return Math.max(min, Math.min(max, i));
    }

    /** An int argument as a long (Python would accept any int; beyond a long no template needs one). */
    static long toLong(Object v, String what) {
        if (v instanceof Boolean b) {
            return b ? 1 : 0;
        }
        if (!PyValues.isIntegral(v)) {
            throw new IllegalArgumentException(what + ": expected an integer, got '" + PyValues.typeName(v) + "'");
        }
        if (v instanceof BigInteger b) {
            return b.signum() < 0 ? Long.MIN_VALUE / 2 : Long.MAX_VALUE / 2;
        }
        return ((Number) v).longValue();
    }
}
