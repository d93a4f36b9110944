package ai.punica.jinja;

import ai.punica.jinja.PyValues.Markup;
import ai.punica.jinja.PyValues.Undefined;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/** Jinja2's built-in tests ({@code x is defined}, {@code x is divisibleby 3}, ...). */
final class Tests {
    static final Set<String> TESTS = Set.of("defined", "undefined", "none", "string", "number", "integer", "float",
            "mapping", "iterable", "sequence", "true", "false", "boolean", "even", "odd", "divisibleby", "eq",
            "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "gt", "greaterthan", ">", "le", "<=", "ge", ">=", "in",
            "callable", "lower", "upper", "sameas", "escaped", "filter", "test");

    private Tests() {
    }

    static boolean test(String name, Object value, List<Object> args) {
        Object other = args.isEmpty() ? null : args.getFirst();
        return switch (name) {
            case "defined" -> !(value instanceof Undefined);
            case "undefined" -> value instanceof Undefined;
            case "none" -> value == null;
            case "string" -> PyValues.text(value) != null;
            case "number" -> value instanceof Number || value instanceof Boolean;
            case "integer" -> PyValues.isIntegral(value);
            case "float" -> value instanceof Double || value instanceof Float;
            case "boolean" -> value instanceof Boolean;
            case "mapping" -> value instanceof Map;
            case "iterable" -> value instanceof List || value instanceof Map || value instanceof CharSequence
                    || value instanceof java.util.Collection || value instanceof Undefined;
            case "sequence" -> value instanceof List || value instanceof Map || value instanceof CharSequence
                    || value instanceof Undefined;
            case "true" -> Boolean.TRUE.equals(value);
            case "false" -> Boolean.FALSE.equals(value);
            case "even" -> Operators.arithmetic("%", value, 2L).equals(0L);
            case "odd" -> Operators.arithmetic("%", value, 2L).equals(1L);
            case "divisibleby" -> PyValues.equal(Operators.arithmetic("%", value, other), 0L);
            case "eq", "equalto", "==" -> PyValues.equal(value, other);
            case "ne", "!=" -> !PyValues.equal(value, other);
            case "lt", "lessthan", "<" -> Operators.compare("<", value, other);
            case "gt", "greaterthan", ">" -> Operators.compare(">", value, other);
            case "le", "<=" -> Operators.compare("<=", value, other);
            case "ge", ">=" -> Operators.compare(">=", value, other);
            case "in" -> Operators.contains(other, value);
            case "callable" -> value instanceof Callable;
            case "lower" -> PyValues.text(value) != null
                    && PyValues.text(value).equals(PyValues.text(value).toLowerCase(Locale.ROOT));
            case "upper" -> PyValues.text(value) != null
                    && PyValues.text(value).equals(PyValues.text(value).toUpperCase(Locale.ROOT));
            case "sameas" -> sameAs(value, other);
            case "escaped" -> value instanceof Markup;
            case "filter" -> Filters.FILTERS.contains(PyValues.str(value));
            case "test" -> TESTS.contains(PyValues.str(value));
            default -> throw new IllegalArgumentException("no test named '" + name + "'");
        };
    }

    /** Python's {@code is}: None, True and False are singletons; small ints are cached by CPython. */
    private static boolean sameAs(Object a, Object b) {
        if (a == null || b == null || a instanceof Boolean || b instanceof Boolean) {
            return a == b || (a != null && a.equals(b));
        }
        if (a instanceof Long x && b instanceof Long y) {
            return x.equals(y) && x >= -5 && x <= 256;
        }
        return a == b;
    }
}
