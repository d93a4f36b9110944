package ai.punica.tokenizer;

import java.util.List;

/** The parsed form of a chat template: statements ({@link Node}) and expressions ({@link Expr}). */
final class TemplateAst {
    private TemplateAst() {
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

    record For(List<String> targets, Expr iterable, Expr filter, List<Node> body, List<Node> otherwise, int pos)
            implements Node {
    }

    /** {@code set a = ...}, {@code set a, b = ...} or {@code set ns.attr = ...} (namespace != null). */
    record Set(String namespace, List<String> targets, Expr value, int pos) implements Node {
    }

    record SetBlock(String target, List<Node> body, int pos) implements Node {
    }

    record Macro(String name, List<String> params, List<Expr> defaults, List<Node> body, int pos) implements Node {
    }

    record Break(int pos) implements Node {
    }

    record Continue(int pos) implements Node {
    }

    /** A body rendered as is: HF's {@code {% generation %}} marker. */
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
