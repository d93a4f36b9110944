package ai.punica.jinja;

import java.util.List;

/** The parsed form of a template: statements ({@link Node}) and expressions ({@link Expr}). */
final class Ast {
    private Ast() {
    }

    /**
     * Whether {@code name} is read anywhere in {@code nodes} (Jinja gives a macro {@code varargs} and
     * {@code kwargs} only when its body reads them, and rejects extra arguments otherwise).
     */
    static boolean mentions(List<?> nodes, String name) {
        for (Object node : nodes) {
            if (mentionsIn(node, name)) {
                return true;
            }
        }
        return false;
    }

    private static boolean mentionsIn(Object value, String name) {
        if (value instanceof Name n) {
            return n.name().equals(name);
        }
        if (value instanceof List<?> list) {
            return mentions(list, name);
        }
        if (value instanceof Record r && (value instanceof Node || value instanceof Expr)) {
            for (var component : r.getClass().getRecordComponents()) {
                try {
                    if (mentionsIn(component.getAccessor().invoke(r), name)) {
                        return true;
                    }
                } catch (ReflectiveOperationException e) {
                    throw new IllegalStateException("cannot read " + component, e);
                }
            }
        }
        return false;
    }

    /** A statement; {@code pos} is its offset in the template, for error messages. */
    sealed interface Node {
        int pos();
    }

    record Text(String text, int pos) implements Node {
    }

    record Output(Expr value, int pos) implements Node {
    }

    record If(List<Expr> conditions, List<List<Node>> branches, List<Node> otherwise, int pos) implements Node {
    }

    /** {@code recursive} loops can call {@code loop(items)} to render their body for nested items. */
    record For(List<String> targets, Expr iterable, Expr filter, boolean recursive, List<Node> body,
            List<Node> otherwise, int pos) implements Node {
    }

    /** {@code set a = ...}, {@code set a, b = ...} or {@code set ns.attr = ...} (namespace != null). */
    record Set(String namespace, List<String> targets, Expr value, int pos) implements Node {
    }

    /** {@code set x | filters}...{@code endset}: the captured body, through the filters (value null). */
    record SetBlock(String target, List<Filter> filters, List<Node> body, int pos) implements Node {
    }

    /** {@code filter a | b(x)}...{@code endfilter}: the filters' value expressions are null. */
    record FilterBlock(List<Filter> filters, List<Node> body, int pos) implements Node {
    }

    /** {@code call(params) macro(args)}...{@code endcall}: the body becomes the macro's {@code caller()}. */
    record CallBlock(List<String> params, List<Expr> defaults, Call call, List<Node> body, int pos) implements Node {
    }

    /** {@code autoescape expr}...{@code endautoescape}: output HTML-escaped (except Markup) while true. */
    record Autoescape(Expr enabled, List<Node> body, int pos) implements Node {
    }

    /** {@code with a = 1, b = 2}...{@code endwith}: names visible in the body only. */
    record With(List<String> targets, List<Expr> values, List<Node> body, int pos) implements Node {
    }

    record Macro(String name, List<String> params, List<Expr> defaults, List<Node> body, int pos) implements Node {
    }

    record Break(int pos) implements Node {
    }

    record Continue(int pos) implements Node {
    }

    /** A body rendered as is: HF's {@code {% generation %}} marker, a {@code {% block %}} without inheritance. */
    record Block(List<Node> body, int pos) implements Node {
    }

    /** An expression; {@code pos} is its offset in the template. */
    sealed interface Expr {
        int pos();
    }

    record Literal(Object value, int pos) implements Expr {
    }

    record Name(String name, int pos) implements Expr {
    }

    record ListLiteral(List<Expr> items, boolean tuple, int pos) implements Expr {
    }

    record DictLiteral(List<Expr> keys, List<Expr> values, int pos) implements Expr {
    }

    record Attribute(Expr target, String name, int pos) implements Expr {
    }

    record Item(Expr target, Expr index, int pos) implements Expr {
    }

    record Slice(Expr target, Expr start, Expr stop, Expr step, int pos) implements Expr {
    }

    record Call(Expr function, List<Expr> args, List<String> kwargNames, List<Expr> kwargValues, int pos)
            implements Expr {
    }

    record Filter(Expr value, String name, List<Expr> args, List<String> kwargNames, List<Expr> kwargValues,
            int pos) implements Expr {
    }

    record Test(Expr value, String name, List<Expr> args, boolean negated, int pos) implements Expr {
    }

    record Binary(String op, Expr left, Expr right, int pos) implements Expr {
    }

    record Unary(String op, Expr operand, int pos) implements Expr {
    }

    /** {@code a < b <= c}: Python's chained comparison. */
    record Compare(Expr first, List<String> ops, List<Expr> rest, int pos) implements Expr {
    }

    record Conditional(Expr condition, Expr then, Expr otherwise, int pos) implements Expr {
    }
}
