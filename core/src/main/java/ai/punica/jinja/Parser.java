package ai.punica.jinja;

import ai.punica.jinja.Ast.Attribute;
import ai.punica.jinja.Ast.Binary;
import ai.punica.jinja.Ast.Block;
import ai.punica.jinja.Ast.Break;
import ai.punica.jinja.Ast.Call;
import ai.punica.jinja.Ast.CallBlock;
import ai.punica.jinja.Ast.Compare;
import ai.punica.jinja.Ast.Conditional;
import ai.punica.jinja.Ast.Continue;
import ai.punica.jinja.Ast.DictLiteral;
import ai.punica.jinja.Ast.Expr;
import ai.punica.jinja.Ast.Filter;
import ai.punica.jinja.Ast.FilterBlock;
import ai.punica.jinja.Ast.For;
import ai.punica.jinja.Ast.If;
import ai.punica.jinja.Ast.Item;
import ai.punica.jinja.Ast.ListLiteral;
import ai.punica.jinja.Ast.Literal;
import ai.punica.jinja.Ast.Macro;
import ai.punica.jinja.Ast.Name;
import ai.punica.jinja.Ast.Node;
import ai.punica.jinja.Ast.Output;
import ai.punica.jinja.Ast.SetBlock;
import ai.punica.jinja.Ast.Slice;
import ai.punica.jinja.Ast.Test;
import ai.punica.jinja.Ast.Text;
import ai.punica.jinja.Ast.Unary;
import ai.punica.jinja.Ast.With;
import ai.punica.jinja.Lexer.Kind;
import ai.punica.jinja.Lexer.Token;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.Predicate;
import java.util.function.Supplier;

/** Recursive-descent parser for Jinja2 templates (no inheritance or includes), following Jinja's precedence. */
final class Parser {
    private static final Set<String> COMPARE_OPS = Set.of("==", "!=", "<", ">", "<=", ">=");
    private static final Set<String> NOT_AN_ARGUMENT = Set.of("else", "or", "and", "if", "not", "in", "is");

    private final String source;
    private final List<Token> tokens;
    private int index;

    private Parser(String source) {
        this.source = source;
        this.tokens = Lexer.tokenize(source);
    }

    static List<Node> parse(String source) {
        Parser parser = new Parser(source);
        List<Node> body = parser.parseBody(Set.of());
        if (parser.peek().kind() != Kind.EOF) {
            throw parser.error("unexpected '" + parser.peek().text() + "'", parser.peek());
        }
        return body;
    }

    private TemplateException error(String message, Token at) {
        return TemplateException.at("template syntax error: " + message, source, at.pos());
    }

    private Token peek() {
        return tokens.get(index);
    }

    private Token peek(int ahead) {
        return tokens.get(Math.min(index + ahead, tokens.size() - 1));
    }

    private Token next() {
        return tokens.get(index++);
    }

    private boolean skipOp(String op) {
        if (peek().isOp(op)) {
            index++;
            return true;
        }
        return false;
    }

    private boolean skipName(String name) {
        if (peek().isName(name)) {
            index++;
            return true;
        }
        return false;
    }

    private Token expectOp(String op) {
        if (!peek().isOp(op)) {
            throw error("expected '" + op + "', found " + describe(peek()), peek());
        }
        return next();
    }

    private String expectName() {
        if (peek().kind() != Kind.NAME) {
            throw error("expected a name, found " + describe(peek()), peek());
        }
        return next().text();
    }

    private void expectBlockEnd() {
        if (peek().kind() != Kind.BLOCK_END) {
            throw error("expected '%}', found " + describe(peek()), peek());
        }
        index++;
    }

    private static String describe(Token t) {
        return switch (t.kind()) {
            case EOF -> "end of template";
            case BLOCK_END -> "'%}'";
            case VAR_END -> "'}}'";
            case STRING -> "string '" + t.text() + "'";
            default -> "'" + t.text() + "'";
        };
    }

    // ---- statements ----

    /** Parses until a block tag named in {@code ends}; leaves the index at that tag's name. */
    private List<Node> parseBody(Set<String> ends) {
        List<Node> body = new ArrayList<>();
        while (true) {
            Token t = peek();
            switch (t.kind()) {
                case TEXT -> {
                    index++;
                    body.add(new Text(t.text(), t.pos()));
                }
                case VAR_BEGIN -> {
                    index++;
                    Expr value = parseTuple(true);
                    if (peek().kind() != Kind.VAR_END) {
                        throw error("expected '}}', found " + describe(peek()), peek());
                    }
                    index++;
                    body.add(new Output(value, t.pos()));
                }
                case BLOCK_BEGIN -> {
                    Token name = peek(1);
                    if (name.kind() == Kind.NAME && ends.contains(name.text())) {
                        index++;
                        return body;
                    }
                    index++;
                    body.add(parseStatement(t));
                }
                case EOF -> {
                    if (!ends.isEmpty()) {
                        throw error("unexpected end of template; expected one of " + ends.stream().sorted()
                                .map(e -> "{% " + e + " %}").toList(), t);
                    }
                    return body;
                }
                default -> throw error("unexpected " + describe(t), t);
            }
        }
    }

    private Node parseStatement(Token begin) {
        Token keyword = peek();
        if (keyword.kind() != Kind.NAME) {
            throw error("expected a statement name after '{%', found " + describe(keyword), keyword);
        }
        index++;
        return switch (keyword.text()) {
            case "if" -> parseIf(begin);
            case "for" -> parseFor(begin);
            case "set" -> parseSet(begin);
            case "macro" -> parseMacro(begin);
            case "break" -> {
                expectBlockEnd();
                yield new Break(begin.pos());
            }
            case "continue" -> {
                expectBlockEnd();
                yield new Continue(begin.pos());
            }
            case "generation" -> {
                expectBlockEnd();
                yield new Block(parseBlockBody("endgeneration"), begin.pos());
            }
            case "block" -> {
                expectName();
                skipName("scoped");
                skipName("required");
                expectBlockEnd();
                yield new Block(parseBlockBody("endblock", true), begin.pos());
            }
            case "filter" -> {
                List<Filter> filters = parseFilterChain();
                expectBlockEnd();
                yield new FilterBlock(filters, parseBlockBody("endfilter"), begin.pos());
            }
            case "call" -> parseCallBlock(begin);
            case "with" -> parseWith(begin);
            case "autoescape" -> {
                Expr enabled = parseExpression(true);
                expectBlockEnd();
                yield new Ast.Autoescape(enabled, parseBlockBody("endautoescape"), begin.pos());
            }
            case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endfilter", "endcall",
                    "endwith", "endblock", "endautoescape" ->
                    throw error("unexpected '{% " + keyword.text() + " %}' with no open block to end", keyword);
            default -> throw error("unknown or unsupported tag '" + keyword.text() + "'", keyword);
        };
    }

    /** The body up to {@code {% end %}} and past that tag. */
    private List<Node> parseBlockBody(String end) {
        return parseBlockBody(end, false);
    }

    /**
     * As {@link #parseBlockBody(String)}; when {@code named} (block, macro), the end tag may repeat the name:
     * {@code {% endmacro m %}}.
     */
    private List<Node> parseBlockBody(String end, boolean named) {
        List<Node> body = parseBody(Set.of(end));
        index++;
        if (named && peek().kind() == Kind.NAME) {
            index++;
        }
        expectBlockEnd();
        return body;
    }

    /** {@code name(args) | name2 | ...} of a filter tag or a filtered block set, each with a null value. */
    private List<Filter> parseFilterChain() {
        List<Filter> filters = new ArrayList<>();
        do {
            filters.add(parseFilterCall(null, peek().pos()));
        } while (skipOp("|"));
        return filters;
    }

    /** A filter name and its optional arguments, applied to {@code value}. */
    private Filter parseFilterCall(Expr value, int pos) {
        Token nameToken = peek();
        String name = expectName();
        if (!Filters.FILTERS.contains(name)) {
            throw error("no filter named '" + name + "'", nameToken);
        }
        List<Expr> args = new ArrayList<>();
        List<String> kwargNames = new ArrayList<>();
        List<Expr> kwargValues = new ArrayList<>();
        if (skipOp("(")) {
            parseArguments(args, kwargNames, kwargValues);
        }
        return new Filter(value, name, args, kwargNames, kwargValues, pos);
    }

    private Node parseCallBlock(Token begin) {
        List<String> params = new ArrayList<>();
        List<Expr> defaults = new ArrayList<>();
        if (peek().isOp("(")) {
            parseParameters(params, defaults);
        }
        Expr call = parsePostfix(parsePrimary());
        if (!(call instanceof Call c)) {
            throw error("expected a macro call after 'call'", peek());
        }
        expectBlockEnd();
        return new CallBlock(params, defaults, c, parseBlockBody("endcall"), begin.pos());
    }

    private Node parseWith(Token begin) {
        List<String> targets = new ArrayList<>();
        List<Expr> values = new ArrayList<>();
        while (peek().kind() != Kind.BLOCK_END) {
            if (!targets.isEmpty()) {
                expectOp(",");
            }
            targets.add(expectName());
            expectOp("=");
            values.add(parseExpression(true));
        }
        expectBlockEnd();
        return new With(targets, values, parseBlockBody("endwith"), begin.pos());
    }

    private void parseParameters(List<String> params, List<Expr> defaults) {
        expectOp("(");
        commaSeparated(")", () -> {
            params.add(expectName());
            defaults.add(skipOp("=") ? parseExpression(true) : null);
        });
    }

    /** Items separated by commas (a trailing one allowed) up to {@code close}, which is consumed. */
    private void commaSeparated(String close, Runnable item) {
        boolean first = true;
        while (!peek().isOp(close)) {
            if (!first) {
                expectOp(",");
                if (peek().isOp(close)) {
                    break;
                }
            }
            item.run();
            first = false;
        }
        expectOp(close);
    }

    private Node parseIf(Token begin) {
        List<Expr> conditions = new ArrayList<>();
        List<List<Node>> branches = new ArrayList<>();
        List<Node> otherwise = List.of();
        conditions.add(parseTuple(true));
        expectBlockEnd();
        while (true) {
            List<Node> body = parseBody(Set.of("elif", "else", "endif"));
            String tag = next().text();
            if (tag.equals("elif")) {
                branches.add(body);
                conditions.add(parseTuple(true));
                expectBlockEnd();
            } else if (tag.equals("else")) {
                branches.add(body);
                expectBlockEnd();
                otherwise = parseBody(Set.of("endif"));
                index++;
                expectBlockEnd();
                break;
            } else {
                branches.add(body);
                expectBlockEnd();
                break;
            }
        }
        return new If(conditions, branches, otherwise, begin.pos());
    }

    private Node parseFor(Token begin) {
        List<String> targets = parseTargets();
        if (!skipName("in")) {
            throw error("expected 'in' in for loop, found " + describe(peek()), peek());
        }
        Expr iterable = parseTuple(false);
        Expr filter = null;
        if (skipName("if")) {
            filter = parseTuple(true);
        }
        boolean recursive = skipName("recursive");
        expectBlockEnd();
        List<Node> body = parseBody(Set.of("else", "endfor"));
        List<Node> otherwise = List.of();
        if (next().text().equals("else")) {
            expectBlockEnd();
            otherwise = parseBody(Set.of("endfor"));
            index++;
        }
        expectBlockEnd();
        return new For(targets, iterable, filter, recursive, body, otherwise, begin.pos());
    }

    private List<String> parseTargets() {
        boolean parenthesized = skipOp("(");
        List<String> targets = new ArrayList<>();
        targets.add(expectName());
        while (skipOp(",")) {
            targets.add(expectName());
        }
        if (parenthesized) {
            expectOp(")");
        }
        return targets;
    }

    private Node parseSet(Token begin) {
        if (peek().kind() == Kind.NAME && peek(1).isOp(".")) {
            String namespace = next().text();
            index++;
            String attr = expectName();
            expectOp("=");
            Expr value = parseTuple(true);
            expectBlockEnd();
            return new Ast.Set(namespace, List.of(attr), value, begin.pos());
        }
        List<String> targets = parseTargets();
        if (skipOp("=")) {
            Expr value = parseTuple(true);
            expectBlockEnd();
            return new Ast.Set(null, targets, value, begin.pos());
        }
        if (targets.size() != 1) {
            throw error("a block set assigns to one name", peek());
        }
        List<Filter> filters = skipOp("|") ? parseFilterChain() : List.of();
        expectBlockEnd();
        return new SetBlock(targets.getFirst(), filters, parseBlockBody("endset"), begin.pos());
    }

    private Node parseMacro(Token begin) {
        String name = expectName();
        List<String> params = new ArrayList<>();
        List<Expr> defaults = new ArrayList<>();
        parseParameters(params, defaults);
        expectBlockEnd();
        return new Macro(name, params, defaults, parseBlockBody("endmacro", true), begin.pos());
    }

    // ---- expressions ----

    /** An expression, or a tuple when commas follow ({@code set a = 1, 2}). */
    private Expr parseTuple(boolean withCondition) {
        Token start = peek();
        Expr first = parseExpression(withCondition);
        if (!peek().isOp(",")) {
            return first;
        }
        List<Expr> items = new ArrayList<>();
        items.add(first);
        while (skipOp(",")) {
            if (isExpressionEnd(peek())) {
                break;
            }
            items.add(parseExpression(withCondition));
        }
        return new ListLiteral(items, true, start.pos());
    }

    private static boolean isExpressionEnd(Token t) {
        return t.kind() == Kind.BLOCK_END || t.kind() == Kind.VAR_END || t.kind() == Kind.EOF || t.isOp(")")
                || t.isOp("]") || t.isOp("}");
    }

    private Expr parseExpression(boolean withCondition) {
        return withCondition ? parseConditional() : parseOr();
    }

    private Expr parseConditional() {
        Expr expr = parseOr();
        while (peek().isName("if")) {
            Token t = next();
            Expr condition = parseOr();
            Expr otherwise = skipName("else") ? parseConditional() : null;
            expr = new Conditional(condition, expr, otherwise, t.pos());
        }
        return expr;
    }

    /** One left-associative binary level of Jinja's grammar: operands from {@code operand}, joined by matching operators. */
    private Expr leftAssociative(Supplier<Expr> operand, Predicate<Token> isOperator) {
        Expr left = operand.get();
        while (isOperator.test(peek())) {
            Token t = next();
            left = new Binary(t.text(), left, operand.get(), t.pos());
        }
        return left;
    }

    private Expr parseOr() {
        return leftAssociative(this::parseAnd, t -> t.isName("or"));
    }

    private Expr parseAnd() {
        return leftAssociative(this::parseNot, t -> t.isName("and"));
    }

    private Expr parseNot() {
        if (peek().isName("not")) {
            Token t = next();
            return new Unary("not", parseNot(), t.pos());
        }
        return parseCompare();
    }

    private Expr parseCompare() {
        Token start = peek();
        Expr first = parseMath1();
        List<String> ops = new ArrayList<>();
        List<Expr> rest = new ArrayList<>();
        while (true) {
            Token t = peek();
            if (t.kind() == Kind.OP && COMPARE_OPS.contains(t.text())) {
                index++;
                ops.add(t.text());
            } else if (t.isName("in")) {
                index++;
                ops.add("in");
            } else if (t.isName("not") && peek(1).isName("in")) {
                index += 2;
                ops.add("not in");
            } else {
                break;
            }
            rest.add(parseMath1());
        }
        return ops.isEmpty() ? first : new Compare(first, ops, rest, start.pos());
    }

    private Expr parseMath1() {
        return leftAssociative(this::parseConcat, t -> t.isOp("+") || t.isOp("-"));
    }

    private Expr parseConcat() {
        return leftAssociative(this::parseMath2, t -> t.isOp("~"));
    }

    private Expr parseMath2() {
        return leftAssociative(this::parsePow, t -> t.isOp("*") || t.isOp("/") || t.isOp("//") || t.isOp("%"));
    }

    /** Jinja's ** is left-associative and binds looser than a unary minus: -2 ** 2 is 4. */
    private Expr parsePow() {
        return leftAssociative(() -> parseUnary(true), t -> t.isOp("**"));
    }

    private Expr parseUnary(boolean withFilter) {
        Token t = peek();
        Expr node;
        if (t.isOp("-") || t.isOp("+")) {
            index++;
            node = new Unary(t.text(), parseUnary(false), t.pos());
        } else {
            node = parsePostfix(parsePrimary());
        }
        return withFilter ? parseFilterExpr(node) : node;
    }

    private Expr parsePrimary() {
        Token t = next();
        switch (t.kind()) {
            case NAME -> {
                return switch (t.text()) {
                    case "true", "True" -> new Literal(Boolean.TRUE, t.pos());
                    case "false", "False" -> new Literal(Boolean.FALSE, t.pos());
                    case "none", "None" -> new Literal(null, t.pos());
                    default -> new Name(t.text(), t.pos());
                };
            }
            case STRING -> {
                StringBuilder sb = new StringBuilder(t.text());
                while (peek().kind() == Kind.STRING) {
                    sb.append(next().text());
                }
                return new Literal(sb.toString(), t.pos());
            }
            case INT -> {
                return new Literal(integer(t), t.pos());
            }
            case FLOAT -> {
                return new Literal(Double.parseDouble(t.text()), t.pos());
            }
            case OP -> {
                switch (t.text()) {
                    case "(" -> {
                        if (skipOp(")")) {
                            return new ListLiteral(List.of(), true, t.pos());
                        }
                        Expr inner = parseExpression(true);
                        if (peek().isOp(",")) {
                            List<Expr> items = new ArrayList<>();
                            items.add(inner);
                            while (skipOp(",")) {
                                if (peek().isOp(")")) {
                                    break;
                                }
                                items.add(parseExpression(true));
                            }
                            inner = new ListLiteral(items, true, t.pos());
                        }
                        expectOp(")");
                        return inner;
                    }
                    case "[" -> {
                        List<Expr> items = new ArrayList<>();
                        commaSeparated("]", () -> items.add(parseExpression(true)));
                        return new ListLiteral(items, false, t.pos());
                    }
                    case "{" -> {
                        List<Expr> keys = new ArrayList<>();
                        List<Expr> values = new ArrayList<>();
                        commaSeparated("}", () -> {
                            keys.add(parseExpression(true));
                            expectOp(":");
                            values.add(parseExpression(true));
                        });
                        return new DictLiteral(keys, values, t.pos());
                    }
                    default -> {
                    }
                }
            }
            default -> {
            }
        }
        throw error("unexpected " + describe(t) + " in expression", t);
    }

    /** An int literal of any size: decimal, or 0x / 0o / 0b. */
    private Object integer(Token t) {
        String text = t.text().toLowerCase(java.util.Locale.ROOT);
        int radix = text.startsWith("0x") ? 16 : text.startsWith("0o") ? 8 : text.startsWith("0b") ? 2 : 10;
        try {
            return PyValues.integer(new java.math.BigInteger(radix == 10 ? text : text.substring(2), radix));
        } catch (NumberFormatException e) {
            throw error("invalid integer literal '" + t.text() + "'", t);
        }
    }

    private Expr parsePostfix(Expr node) {
        while (true) {
            Token t = peek();
            if (t.isOp(".")) {
                index++;
                Token name = next();
                if (name.kind() == Kind.NAME) {
                    node = new Attribute(node, name.text(), t.pos());
                } else if (name.kind() == Kind.INT) {
                    node = new Item(node, new Literal(integer(name), name.pos()), t.pos());
                } else {
                    throw error("expected an attribute name after '.', found " + describe(name), name);
                }
            } else if (t.isOp("[")) {
                index++;
                node = parseSubscript(node, t);
            } else if (t.isOp("(")) {
                node = parseCall(node);
            } else {
                return node;
            }
        }
    }

    private Expr parseSubscript(Expr target, Token open) {
        Expr start = null;
        if (!peek().isOp(":")) {
            start = parseExpression(true);
            if (skipOp("]")) {
                return new Item(target, start, open.pos());
            }
        }
        expectOp(":");
        Expr stop = null;
        Expr step = null;
        if (!peek().isOp("]") && !peek().isOp(":")) {
            stop = parseExpression(true);
        }
        if (skipOp(":") && !peek().isOp("]")) {
            step = parseExpression(true);
        }
        expectOp("]");
        return new Slice(target, start, stop, step, open.pos());
    }

    private Call parseCall(Expr function) {
        Token open = expectOp("(");
        List<Expr> args = new ArrayList<>();
        List<String> kwargNames = new ArrayList<>();
        List<Expr> kwargValues = new ArrayList<>();
        parseArguments(args, kwargNames, kwargValues);
        return new Call(function, args, kwargNames, kwargValues, open.pos());
    }

    /** Arguments after '(' up to and including ')'. */
    private void parseArguments(List<Expr> args, List<String> kwargNames, List<Expr> kwargValues) {
        commaSeparated(")", () -> {
            if (peek().kind() == Kind.NAME && peek(1).isOp("=")) {
                kwargNames.add(next().text());
                index++;
                kwargValues.add(parseExpression(true));
            } else {
                if (!kwargNames.isEmpty()) {
                    throw error("positional argument after keyword argument", peek());
                }
                args.add(parseExpression(true));
            }
        });
    }

    private Expr parseFilterExpr(Expr node) {
        while (true) {
            Token t = peek();
            if (t.isOp("|")) {
                index++;
                node = parseFilterCall(node, t.pos());
            } else if (t.isName("is")) {
                index++;
                boolean negated = skipName("not");
                Token nameToken = peek();
                String name = nameToken.kind() == Kind.NAME ? nameToken.text() : "";
                if (!Tests.TESTS.contains(name)) {
                    throw error("no test named '" + nameToken.text() + "'", nameToken);
                }
                index++;
                List<Expr> args = new ArrayList<>();
                if (skipOp("(")) {
                    List<String> kwargNames = new ArrayList<>();
                    parseArguments(args, kwargNames, new ArrayList<>());
                } else if (isTestArgumentStart(peek())) {
                    args.add(parsePostfix(parsePrimary()));
                }
                node = new Test(node, name, args, negated, t.pos());
            } else if (t.isOp("(")) {
                node = parseCall(node);
            } else {
                return node;
            }
        }
    }

    private static boolean isTestArgumentStart(Token t) {
        return switch (t.kind()) {
            case STRING, INT, FLOAT -> true;
            case NAME -> !NOT_AN_ARGUMENT.contains(t.text());
            case OP -> t.text().equals("[") || t.text().equals("{");
            default -> false;
        };
    }
}
