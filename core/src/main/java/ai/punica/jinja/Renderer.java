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
import ai.punica.jinja.PyValues.Tuple;
import ai.punica.jinja.PyValues.Undefined;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Renders a parsed template: one instance per render, not shared. Values follow Python semantics
 * ({@link PyValues}, {@link Operators}); scoping follows Jinja2: a for-loop body gets a fresh
 * scope in each iteration (hence {@code namespace()} to carry state out of loops), if-blocks
 * share their scope. Depth (macro calls, recursive loops) and output are bounded by {@link Limits}.
 */
final class Renderer {

    /** Jinja's {@code namespace()}: the one object whose attributes a template may assign. */
    static final class Namespace extends LinkedHashMap<String, Object> {
    }

    /** A {@code groupby} group: a (grouper, list) tuple whose parts are also attributes. */
    static final class Group extends Tuple {
        Group(Object grouper, List<Object> items) {
            super(grouper, items);
        }
    }

    private static final class Scope {
        final Scope parent;
        final Map<String, Object> vars = new HashMap<>();

        Scope(Scope parent) {
            this.parent = parent;
        }

        Object lookup(String name) {
            for (Scope s = this; s != null; s = s.parent) {
                if (s.vars.containsKey(name)) {
                    return s.vars.get(name);
                }
            }
            return new Undefined(name);
        }
    }

    /** Thrown to leave a loop iteration; carries no stack trace. */
    private static final class LoopSignal extends RuntimeException {
        final boolean isBreak;

        LoopSignal(boolean isBreak) {
            super(null, null, false, false);
            this.isBreak = isBreak;
        }
    }

    private static final LoopSignal BREAK = new LoopSignal(true);
    private static final LoopSignal CONTINUE = new LoopSignal(false);

    private final String source;
    private final Limits limits;
    private long written;
    private int depth;
    private boolean autoescape;

    Renderer(String source, Limits limits) {
        this.source = source;
        this.limits = limits;
    }

    String render(List<Node> template, Map<String, Object> variables) {
        Scope globals = new Scope(null);
        Globals.install(globals.vars);
        Scope top = new Scope(globals);
        top.vars.putAll(variables);
        StringBuilder out = new StringBuilder();
        renderAll(template, top, out);
        return out.toString();
    }

    TemplateException error(String message, int pos) {
        return TemplateException.at(message, source, pos);
    }

    // ---- statements ----

    private void renderAll(List<Node> nodes, Scope scope, StringBuilder out) {
        for (Node node : nodes) {
            renderNode(node, scope, out);
        }
    }

    private void emit(StringBuilder out, String text, int pos) {
        written += text.length();
        if (written > limits.maxOutputChars()) {
            throw error("template output exceeds " + limits.maxOutputChars() + " characters (runaway template?)", pos);
        }
        out.append(text);
    }

    private void renderNode(Node node, Scope scope, StringBuilder out) {
        switch (node) {
            case Text t -> emit(out, t.text(), t.pos());
            case Output o -> {
                Object value = eval(o.value(), scope);
                emit(out, autoescape ? Operators.escapeArgument(value) : PyValues.str(value), o.pos());
            }
            case Ast.Autoescape a -> {
                boolean outer = autoescape;
                autoescape = PyValues.truthy(eval(a.enabled(), scope));
                try {
                    renderAll(a.body(), scope, out);
                } finally {
                    autoescape = outer;
                }
            }
            case If i -> {
                for (int k = 0; k < i.conditions().size(); k++) {
                    if (PyValues.truthy(eval(i.conditions().get(k), scope))) {
                        renderAll(i.branches().get(k), scope, out);
                        return;
                    }
                }
                renderAll(i.otherwise(), scope, out);
            }
            case For f -> {
                List<Object> items = iterate(eval(f.iterable(), scope), f.iterable().pos());
                renderFor(f, items, scope, out, 0);
            }
            case Ast.Set s -> {
                Object value = eval(s.value(), scope);
                if (s.namespace() != null) {
                    Object target = scope.lookup(s.namespace());
                    if (!(target instanceof Namespace ns)) {
                        throw error("cannot assign attribute '" + s.targets().getFirst() + "' of '" + s.namespace()
                                + "': only namespace() objects can be assigned to", s.pos());
                    }
                    ns.put(s.targets().getFirst(), value);
                } else {
                    assign(s.targets(), value, scope, s.pos());
                }
            }
            case SetBlock s -> scope.vars.put(s.target(), applyFilters(s.filters(), capture(s.body(), scope), scope));
            case FilterBlock f -> emit(out, PyValues.str(applyFilters(f.filters(), capture(f.body(), scope), scope)),
                    f.pos());
            case Macro m -> scope.vars.put(m.name(), new MacroFunction(m, scope, m.name(), null));
            case CallBlock c -> {
                Macro body = new Macro("caller", c.params(), c.defaults(), c.body(), c.pos());
                emit(out, PyValues.str(call(c.call(), scope, new MacroFunction(body, scope, "caller", null))), c.pos());
            }
            case With w -> {
                Scope inner = new Scope(scope);
                for (int k = 0; k < w.targets().size(); k++) {
                    inner.vars.put(w.targets().get(k), eval(w.values().get(k), scope));
                }
                renderAll(w.body(), inner, out);
            }
            case Break b -> throw BREAK;
            case Continue c -> throw CONTINUE;
            case Block b -> renderAll(b.body(), scope, out);
        }
    }

    private String capture(List<Node> body, Scope scope) {
        StringBuilder captured = new StringBuilder();
        renderAll(body, scope, captured);
        return captured.toString();
    }

    private Object applyFilters(List<Filter> filters, Object value, Scope scope) {
        for (Filter f : filters) {
            value = eval(new Filter(new Literal(value, f.pos()), f.name(), f.args(), f.kwargNames(), f.kwargValues(),
                    f.pos()), scope);
        }
        return value;
    }

    private void assign(List<String> targets, Object value, Scope scope, int pos) {
        if (targets.size() == 1) {
            scope.vars.put(targets.getFirst(), value);
            return;
        }
        List<Object> items = iterate(value, pos);
        if (items.size() != targets.size()) {
            throw error((items.size() > targets.size() ? "too many" : "not enough") + " values to unpack (expected "
                    + targets.size() + ", got " + items.size() + ")", pos);
        }
        for (int i = 0; i < targets.size(); i++) {
            scope.vars.put(targets.get(i), items.get(i));
        }
    }

    private void renderFor(For f, List<Object> items, Scope scope, StringBuilder out, int level) {
        if (f.filter() != null) {
            List<Object> kept = new ArrayList<>();
            for (Object item : items) {
                Scope probe = new Scope(scope);
                assign(f.targets(), item, probe, f.pos());
                if (PyValues.truthy(eval(f.filter(), probe))) {
                    kept.add(item);
                }
            }
            items = kept;
        }
        if (items.isEmpty()) {
            renderAll(f.otherwise(), scope, out);
            return;
        }
        Object[] lastChanged = {new Object()};
        for (int i = 0; i < items.size(); i++) {
            Scope iteration = new Scope(scope);
            assign(f.targets(), items.get(i), iteration, f.pos());
            Map<String, Object> loop = loopInfo(items, i, level, lastChanged);
            if (f.recursive()) {
                loop.put("__call__", (Callable) (args, kwargs) -> {
                    enter(f.pos());
                    try {
                        StringBuilder nested = new StringBuilder();
                        renderFor(f, iterate(args.isEmpty() ? null : args.getFirst(), f.pos()), scope, nested,
                                level + 1);
                        return nested.toString();
                    } finally {
                        depth--;
                    }
                });
            }
            iteration.vars.put("loop", loop);
            try {
                renderAll(f.body(), iteration, out);
            } catch (LoopSignal signal) {
                if (signal.isBreak) {
                    break;
                }
            }
        }
    }

    private static Map<String, Object> loopInfo(List<Object> items, int i, int level, Object[] lastChanged) {
        int n = items.size();
        Map<String, Object> loop = new HashMap<>();
        loop.put("index", (long) i + 1);
        loop.put("index0", (long) i);
        loop.put("revindex", (long) (n - i));
        loop.put("revindex0", (long) (n - i - 1));
        loop.put("first", i == 0);
        loop.put("last", i == n - 1);
        loop.put("length", (long) n);
        loop.put("depth", (long) level + 1);
        loop.put("depth0", (long) level);
        loop.put("previtem", i > 0 ? items.get(i - 1) : new Undefined("previtem"));
        loop.put("nextitem", i + 1 < n ? items.get(i + 1) : new Undefined("nextitem"));
        loop.put("cycle", (Callable) (args, kwargs) -> {
            if (args.isEmpty()) {
                throw new IllegalArgumentException("no items for cycling given");
            }
            return args.get(i % args.size());
        });
        loop.put("changed", (Callable) (args, kwargs) -> {
            Object value = new Tuple(args);
            if (PyValues.equal(value, lastChanged[0])) {
                return false;
            }
            lastChanged[0] = value;
            return true;
        });
        return loop;
    }

    private void enter(int pos) {
        if (++depth > limits.maxDepth()) {
            depth--;
            throw error("template recursion deeper than " + limits.maxDepth() + " levels (a macro or recursive loop "
                    + "that never ends?)", pos);
        }
    }

    /** A macro bound to its defining scope; also the {@code caller} of a call block. */
    private final class MacroFunction implements Callable {
        final Macro macro;
        final Scope definedIn;
        final String name;
        final Callable caller;
        final boolean usesVarargs;
        final boolean usesKwargs;

        MacroFunction(Macro macro, Scope definedIn, String name, Callable caller) {
            this.macro = macro;
            this.definedIn = definedIn;
            this.name = name;
            this.caller = caller;
            this.usesVarargs = Ast.mentions(macro.body(), "varargs");
            this.usesKwargs = Ast.mentions(macro.body(), "kwargs");
        }

        @Override
        public Object call(List<Object> args, Map<String, Object> kwargs) {
            List<String> params = macro.params();
            Scope local = new Scope(definedIn);
            Map<String, Object> extraKwargs = new LinkedHashMap<>(kwargs);
            for (int i = 0; i < params.size(); i++) {
                String p = params.get(i);
                Object value;
                if (i < args.size()) {
                    value = args.get(i);
                    if (extraKwargs.containsKey(p)) {
                        throw new IllegalArgumentException("macro '" + name + "' got multiple values for argument '"
                                + p + "'");
                    }
                } else if (extraKwargs.containsKey(p)) {
                    value = extraKwargs.remove(p);
                } else if (macro.defaults().get(i) != null) {
                    value = eval(macro.defaults().get(i), local);
                } else {
                    value = new Undefined(p);
                }
                local.vars.put(p, value);
            }
            if (args.size() > params.size() && !usesVarargs) {
                throw new IllegalArgumentException("macro '" + name + "' takes not more than " + params.size()
                        + " argument(s)");
            }
            if (!extraKwargs.isEmpty() && !usesKwargs) {
                String unknown = extraKwargs.keySet().iterator().next();
                if (!(unknown.equals("caller") && caller == null)) {
                    throw new IllegalArgumentException("macro '" + name + "' takes no keyword argument '" + unknown
                            + "'");
                }
            }
            local.vars.put("varargs", new Tuple(args.size() > params.size() ? args.subList(params.size(), args.size())
                    : List.of()));
            local.vars.put("kwargs", extraKwargs);
            if (kwargs.get("caller") instanceof Callable c) {
                local.vars.put("caller", c);
            }
            enter(macro.pos());
            try {
                StringBuilder out = new StringBuilder();
                renderAll(macro.body(), local, out);
                return out.toString();
            } finally {
                depth--;
            }
        }
    }

    // ---- expressions ----

    Object eval(Expr expr, Scope scope) {
        try {
            return evalUnchecked(expr, scope);
        } catch (TemplateException | LoopSignal e) {
            throw e;
        } catch (RuntimeException e) {
            throw error(e.getMessage() == null ? e.toString() : e.getMessage(), expr.pos());
        }
    }

    private Object evalUnchecked(Expr expr, Scope scope) {
        return switch (expr) {
            case Literal l -> l.value();
            case Name n -> scope.lookup(n.name());
            case ListLiteral l -> {
                List<Object> items = new ArrayList<>(l.items().size());
                for (Expr e : l.items()) {
                    items.add(eval(e, scope));
                }
                yield l.tuple() ? new Tuple(items) : items;
            }
            case DictLiteral d -> {
                Map<Object, Object> map = new LinkedHashMap<>();
                for (int i = 0; i < d.keys().size(); i++) {
                    map.put(eval(d.keys().get(i), scope), eval(d.values().get(i), scope));
                }
                yield map;
            }
            case Attribute a -> getAttribute(eval(a.target(), scope), a.name());
            case Item i -> getItem(eval(i.target(), scope), eval(i.index(), scope));
            case Slice s -> Operators.slice(eval(s.target(), scope), optional(s.start(), scope),
                    optional(s.stop(), scope), optional(s.step(), scope));
            case Call c -> call(c, scope, null);
            case Filter f -> {
                List<Object> args = new ArrayList<>();
                for (Expr e : f.args()) {
                    args.add(eval(e, scope));
                }
                Map<String, Object> kwargs = new LinkedHashMap<>();
                for (int i = 0; i < f.kwargNames().size(); i++) {
                    kwargs.put(f.kwargNames().get(i), eval(f.kwargValues().get(i), scope));
                }
                yield Filters.apply(f.name(), eval(f.value(), scope), args, kwargs, this);
            }
            case Test t -> {
                List<Object> args = new ArrayList<>();
                for (Expr e : t.args()) {
                    args.add(eval(e, scope));
                }
                boolean result = Tests.test(t.name(), eval(t.value(), scope), args);
                yield t.negated() != result;
            }
            case Unary u -> {
                Object v = eval(u.operand(), scope);
                yield switch (u.op()) {
                    case "not" -> !PyValues.truthy(v);
                    case "-" -> Operators.negate(v);
                    default -> Operators.plus(v);
                };
            }
            case Binary b -> binary(b, scope);
            case Compare c -> {
                Object left = eval(c.first(), scope);
                for (int i = 0; i < c.ops().size(); i++) {
                    Object right = eval(c.rest().get(i), scope);
                    if (!Operators.compare(c.ops().get(i), left, right)) {
                        yield false;
                    }
                    left = right;
                }
                yield true;
            }
            case Conditional c -> PyValues.truthy(eval(c.condition(), scope)) ? eval(c.then(), scope)
                    : c.otherwise() == null ? new Undefined(null) : eval(c.otherwise(), scope);
        };
    }

    private Object optional(Expr e, Scope scope) {
        return e == null ? null : eval(e, scope);
    }

    private Object call(Call c, Scope scope, Callable caller) {
        Object function = eval(c.function(), scope);
        List<Object> args = new ArrayList<>(c.args().size());
        for (Expr e : c.args()) {
            args.add(eval(e, scope));
        }
        Map<String, Object> kwargs = new LinkedHashMap<>();
        for (int i = 0; i < c.kwargNames().size(); i++) {
            kwargs.put(c.kwargNames().get(i), eval(c.kwargValues().get(i), scope));
        }
        if (caller != null) {
            kwargs.put("caller", caller);
        }
        if (function instanceof Map<?, ?> map && map.get("__call__") instanceof Callable loopCall) {
            function = loopCall;
        }
        if (function instanceof Callable callable) {
            try {
                return callable.call(args, kwargs);
            } catch (TemplateException | LoopSignal e) {
                throw e;
            } catch (RuntimeException e) {
                throw error(e.getMessage() == null ? e.toString() : e.getMessage(), c.pos());
            }
        }
        String what = c.function() instanceof Name n ? "'" + n.name() + "'"
                : c.function() instanceof Attribute a ? "'" + a.name() + "'" : "expression";
        if (function instanceof Undefined) {
            throw new IllegalArgumentException(what + " is undefined and cannot be called");
        }
        throw new IllegalArgumentException(what + " of type '" + PyValues.typeName(function) + "' is not callable");
    }

    private Object binary(Binary b, Scope scope) {
        if (b.op().equals("and")) {
            Object left = eval(b.left(), scope);
            return PyValues.truthy(left) ? eval(b.right(), scope) : left;
        }
        if (b.op().equals("or")) {
            Object left = eval(b.left(), scope);
            return PyValues.truthy(left) ? left : eval(b.right(), scope);
        }
        return Operators.arithmetic(b.op(), eval(b.left(), scope), eval(b.right(), scope));
    }

    private List<Object> iterate(Object v, int pos) {
        try {
            return PyValues.iterate(v);
        } catch (IllegalArgumentException e) {
            throw error(e.getMessage(), pos);
        }
    }

    /** Jinja's {@code obj.name}: a method of the object if it has one, else its item {@code name}. */
    static Object getAttribute(Object target, String name) {
        if (target instanceof Undefined u) {
            throw undefinedAccess(u);
        }
        if (target instanceof Group g && (name.equals("grouper") || name.equals("list"))) {
            return g.get(name.equals("grouper") ? 0 : 1);
        }
        if (target instanceof MacroFunction m && (name.equals("name") || name.equals("arguments"))) {
            return name.equals("name") ? m.name : new Tuple(m.macro.params());
        }
        Callable method = Methods.method(target, name);
        if (method != null) {
            return method;
        }
        if (target instanceof Map<?, ?> map && !name.startsWith("__")) {
            return map.containsKey(name) ? map.get(name) : new Undefined(name);
        }
        return new Undefined(name);
    }

    /** Jinja's {@code obj[key]}: the item, else the attribute of a string key, else Undefined. */
    static Object getItem(Object target, Object key) {
        if (target instanceof Undefined u) {
            throw undefinedAccess(u);
        }
        if (target instanceof Map<?, ?> map) {
            if (map.containsKey(key)) {
                return map.get(key);
            }
            if (key instanceof Long l && map.containsKey(l.intValue())) {
                return map.get(l.intValue());
            }
        } else if ((target instanceof List<?> || PyValues.text(target) != null) && PyValues.isIntegral(key)) {
            int n = PyValues.length(target);
            long i = Operators.toLong(key, "index");
            if (i < 0) {
                i += n;
            }
            if (i >= 0 && i < n) {
                return target instanceof List<?> list ? list.get((int) i) : codePointAt(PyValues.text(target), (int) i);
            }
            return new Undefined(PyValues.typeName(target) + " object has no element " + key);
        } else if (target == null) {
            throw new IllegalArgumentException("'NoneType' object is not subscriptable");
        }
        if (key instanceof String s && !(target instanceof Map<?, ?>)) {
            Callable method = Methods.method(target, s);
            if (method != null) {
                return method;
            }
        }
        return new Undefined(PyValues.str(key));
    }

    private static IllegalArgumentException undefinedAccess(Undefined u) {
        return new IllegalArgumentException(u.name() == null ? "undefined value has no attributes or items"
                : u.name().contains(" ") ? u.name() : "'" + u.name() + "' is undefined");
    }

    private static String codePointAt(String s, int index) {
        int offset = s.offsetByCodePoints(0, index);
        return new String(Character.toChars(s.codePointAt(offset)));
    }

    /** For filters that call back into the runtime (e.g. map with a filter name). */
    Object applyFilter(String name, Object value, List<Object> args, Map<String, Object> kwargs) {
        return Filters.apply(name, value, args, kwargs, this);
    }
}
