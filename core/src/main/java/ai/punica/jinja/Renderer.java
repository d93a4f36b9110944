package ai.punica.tokenizer;

import ai.punica.tokenizer.PyValues.Tuple;
import ai.punica.tokenizer.PyValues.Undefined;
import ai.punica.tokenizer.TemplateAst.Attribute;
import ai.punica.tokenizer.TemplateAst.Binary;
import ai.punica.tokenizer.TemplateAst.Block;
import ai.punica.tokenizer.TemplateAst.Break;
import ai.punica.tokenizer.TemplateAst.Call;
import ai.punica.tokenizer.TemplateAst.Compare;
import ai.punica.tokenizer.TemplateAst.Conditional;
import ai.punica.tokenizer.TemplateAst.Continue;
import ai.punica.tokenizer.TemplateAst.DictLiteral;
import ai.punica.tokenizer.TemplateAst.Expr;
import ai.punica.tokenizer.TemplateAst.Filter;
import ai.punica.tokenizer.TemplateAst.For;
import ai.punica.tokenizer.TemplateAst.If;
import ai.punica.tokenizer.TemplateAst.Item;
import ai.punica.tokenizer.TemplateAst.ListLiteral;
import ai.punica.tokenizer.TemplateAst.Literal;
import ai.punica.tokenizer.TemplateAst.Macro;
import ai.punica.tokenizer.TemplateAst.Name;
import ai.punica.tokenizer.TemplateAst.Node;
import ai.punica.tokenizer.TemplateAst.Output;
import ai.punica.tokenizer.TemplateAst.SetBlock;
import ai.punica.tokenizer.TemplateAst.Slice;
import ai.punica.tokenizer.TemplateAst.Test;
import ai.punica.tokenizer.TemplateAst.Text;
import ai.punica.tokenizer.TemplateAst.Unary;
import java.time.ZonedDateTime;
import java.time.format.TextStyle;
import java.time.temporal.ChronoField;
import java.time.temporal.TemporalAccessor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Renders a parsed chat template: one instance per render, not shared. Values follow Python
 * semantics ({@link PyValues}); scoping follows Jinja2: a for loop body gets a fresh scope in each
 * iteration (hence {@code namespace()} to carry state out of loops), if-blocks share their scope.
 */
final class TemplateRuntime {

    /** Something a template can call: a global function, a macro, or a bound method. */
    @FunctionalInterface
    interface Callable {
        Object call(List<Object> args, Map<String, Object> kwargs);
    }

    /** Jinja's {@code namespace()}: the one object whose attributes a template may assign. */
    static final class Namespace extends LinkedHashMap<String, Object> {
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
    private final TemporalAccessor now;

    TemplateRuntime(String source, TemporalAccessor now) {
        this.source = source;
        this.now = now;
    }

    String render(List<Node> template, Map<String, Object> variables) {
        Scope globals = new Scope(null);
        globals.vars.put("range", (Callable) this::range);
        globals.vars.put("namespace", (Callable) (args, kwargs) -> {
            Namespace ns = new Namespace();
            for (Object a : args) {
                if (a instanceof Map<?, ?> m) {
                    m.forEach((k, v) -> ns.put(String.valueOf(k), v));
                }
            }
            ns.putAll(kwargs);
            return ns;
        });
        globals.vars.put("dict", (Callable) (args, kwargs) -> {
            Map<Object, Object> d = new LinkedHashMap<>();
            for (Object a : args) {
                if (a instanceof Map<?, ?> m) {
                    d.putAll(m);
                }
            }
            d.putAll(kwargs);
            return d;
        });
        globals.vars.put("raise_exception", (Callable) (args, kwargs) -> {
            throw new RaisedByTemplate(args.isEmpty() ? "raise_exception called" : PyValues.str(args.getFirst()));
        });
        globals.vars.put("strftime_now", (Callable) (args, kwargs) -> strftime(PyValues.str(arg(args, 0, "%Y-%m-%d"))));
        Scope top = new Scope(globals);
        top.vars.putAll(variables);
        StringBuilder out = new StringBuilder();
        renderAll(template, top, out);
        return out.toString();
    }

    /** raise_exception(...) from the template: reported with the call's position. */
    static final class RaisedByTemplate extends RuntimeException {
        RaisedByTemplate(String message) {
            super(message, null, false, false);
        }
    }

    private TemplateException error(String message, int pos) {
        int[] lc = TemplateLexer.lineColumn(source, pos);
        return new TemplateException(message, lc[0], lc[1]);
    }

    // ---- statements ----

    private void renderAll(List<Node> nodes, Scope scope, StringBuilder out) {
        for (Node node : nodes) {
            renderNode(node, scope, out);
        }
    }

    private void renderNode(Node node, Scope scope, StringBuilder out) {
        switch (node) {
            case Text t -> out.append(t.text());
            case Output o -> out.append(PyValues.str(eval(o.value(), scope)));
            case If i -> {
                for (int k = 0; k < i.conditions().size(); k++) {
                    if (PyValues.truthy(eval(i.conditions().get(k), scope))) {
                        renderAll(i.branches().get(k), scope, out);
                        return;
                    }
                }
                renderAll(i.otherwise(), scope, out);
            }
            case For f -> renderFor(f, scope, out);
            case TemplateAst.Set s -> {
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
            case SetBlock s -> {
                StringBuilder captured = new StringBuilder();
                renderAll(s.body(), scope, captured);
                scope.vars.put(s.target(), captured.toString());
            }
            case Macro m -> scope.vars.put(m.name(), macro(m, scope));
            case Break b -> throw BREAK;
            case Continue c -> throw CONTINUE;
            case Block b -> renderAll(b.body(), scope, out);
        }
    }

    private void assign(List<String> targets, Object value, Scope scope, int pos) {
        if (targets.size() == 1) {
            scope.vars.put(targets.getFirst(), value);
            return;
        }
        List<Object> items = iterate(value, pos);
        if (items.size() != targets.size()) {
            throw error("cannot unpack " + items.size() + " values into " + targets.size() + " names " + targets, pos);
        }
        for (int i = 0; i < targets.size(); i++) {
            scope.vars.put(targets.get(i), items.get(i));
        }
    }

    private void renderFor(For f, Scope scope, StringBuilder out) {
        List<Object> items = iterate(eval(f.iterable(), scope), f.iterable().pos());
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
        for (int i = 0; i < items.size(); i++) {
            Scope iteration = new Scope(scope);
            assign(f.targets(), items.get(i), iteration, f.pos());
            iteration.vars.put("loop", loopInfo(items, i));
            try {
                renderAll(f.body(), iteration, out);
            } catch (LoopSignal signal) {
                if (signal.isBreak) {
                    break;
                }
            }
        }
    }

    private static Map<String, Object> loopInfo(List<Object> items, int i) {
        int n = items.size();
        Map<String, Object> loop = new HashMap<>();
        loop.put("index", (long) i + 1);
        loop.put("index0", (long) i);
        loop.put("revindex", (long) (n - i));
        loop.put("revindex0", (long) (n - i - 1));
        loop.put("first", i == 0);
        loop.put("last", i == n - 1);
        loop.put("length", (long) n);
        loop.put("depth", 1L);
        loop.put("depth0", 0L);
        loop.put("previtem", i > 0 ? items.get(i - 1) : new Undefined("previtem"));
        loop.put("nextitem", i + 1 < n ? items.get(i + 1) : new Undefined("nextitem"));
        loop.put("cycle", (Callable) (args, kwargs) -> args.isEmpty() ? new Undefined("cycle") : args.get(i % args.size()));
        return loop;
    }

    private Callable macro(Macro m, Scope definedIn) {
        return (args, kwargs) -> {
            Scope local = new Scope(definedIn);
            for (int i = 0; i < m.params().size(); i++) {
                String p = m.params().get(i);
                Object value;
                if (i < args.size()) {
                    value = args.get(i);
                } else if (kwargs.containsKey(p)) {
                    value = kwargs.get(p);
                } else if (m.defaults().get(i) != null) {
                    value = eval(m.defaults().get(i), local);
                } else {
                    value = new Undefined(p);
                }
                local.vars.put(p, value);
            }
            StringBuilder out = new StringBuilder();
            renderAll(m.body(), local, out);
            return out.toString();
        };
    }

    // ---- expressions ----

    Object eval(Expr expr, Scope scope) {
        try {
            return evalUnchecked(expr, scope);
        } catch (TemplateException | LoopSignal e) {
            throw e;
        } catch (RaisedByTemplate e) {
            throw error(e.getMessage(), expr.pos());
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
            case Slice s -> slice(eval(s.target(), scope), optional(s.start(), scope), optional(s.stop(), scope),
                    optional(s.step(), scope));
            case Call c -> call(c, scope);
            case Filter f -> {
                List<Object> args = new ArrayList<>();
                for (Expr e : f.args()) {
                    args.add(eval(e, scope));
                }
                Map<String, Object> kwargs = new LinkedHashMap<>();
                for (int i = 0; i < f.kwargNames().size(); i++) {
                    kwargs.put(f.kwargNames().get(i), eval(f.kwargValues().get(i), scope));
                }
                yield TemplateFilters.apply(f.name(), eval(f.value(), scope), args, kwargs, this);
            }
            case Test t -> {
                List<Object> args = new ArrayList<>();
                for (Expr e : t.args()) {
                    args.add(eval(e, scope));
                }
                boolean result = TemplateFilters.test(t.name(), eval(t.value(), scope), args);
                yield t.negated() != result;
            }
            case Unary u -> {
                Object v = eval(u.operand(), scope);
                yield switch (u.op()) {
                    case "not" -> !PyValues.truthy(v);
                    case "-" -> negate(v);
                    default -> {
                        requireNumber(v, "+");
                        yield v;
                    }
                };
            }
            case Binary b -> binary(b, scope);
            case Compare c -> {
                Object left = eval(c.first(), scope);
                for (int i = 0; i < c.ops().size(); i++) {
                    Object right = eval(c.rest().get(i), scope);
                    if (!compare(c.ops().get(i), left, right)) {
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

    private Object call(Call c, Scope scope) {
        Object function = eval(c.function(), scope);
        List<Object> args = new ArrayList<>(c.args().size());
        for (Expr e : c.args()) {
            args.add(eval(e, scope));
        }
        Map<String, Object> kwargs = new LinkedHashMap<>();
        for (int i = 0; i < c.kwargNames().size(); i++) {
            kwargs.put(c.kwargNames().get(i), eval(c.kwargValues().get(i), scope));
        }
        if (function instanceof Callable callable) {
            return callable.call(args, kwargs);
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
        Object l = eval(b.left(), scope);
        Object r = eval(b.right(), scope);
        return arithmetic(b.op(), l, r);
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
            if (l instanceof String a && r instanceof String c) {
                return a + c;
            }
            if (l instanceof List<?> a && r instanceof List<?> c) {
                List<Object> joined = new ArrayList<>(a);
                joined.addAll(c);
                return l instanceof Tuple ? new Tuple(joined) : joined;
            }
        }
        if (op.equals("*")) {
            if (l instanceof String s && PyValues.isIntegral(r)) {
                return s.repeat((int) Math.max(0, ((Number) r).longValue()));
            }
            if (l instanceof List<?> list && PyValues.isIntegral(r)) {
                List<Object> repeated = new ArrayList<>();
                for (long i = 0; i < ((Number) r).longValue(); i++) {
                    repeated.addAll(list);
                }
                return repeated;
            }
        }
        if (op.equals("%") && l instanceof String format) {
            return TemplateFilters.percentFormat(format, r instanceof Tuple t ? t : List.of(r));
        }
        if (!isNumeric(l) || !isNumeric(r)) {
            throw new IllegalArgumentException("unsupported operand type(s) for " + op + ": '" + PyValues.typeName(l)
                    + "' and '" + PyValues.typeName(r) + "'");
        }
        Number a = asNumber(l);
        Number c = asNumber(r);
        boolean integral = PyValues.isIntegral(a) && PyValues.isIntegral(c);
        switch (op) {
            case "+" -> {
                return integral ? (Object) (a.longValue() + c.longValue()) : a.doubleValue() + c.doubleValue();
            }
            case "-" -> {
                return integral ? (Object) (a.longValue() - c.longValue()) : a.doubleValue() - c.doubleValue();
            }
            case "*" -> {
                return integral ? (Object) (a.longValue() * c.longValue()) : a.doubleValue() * c.doubleValue();
            }
            case "/" -> {
                if (c.doubleValue() == 0) {
                    throw new IllegalArgumentException("division by zero");
                }
                return a.doubleValue() / c.doubleValue();
            }
            case "//" -> {
                if (c.doubleValue() == 0) {
                    throw new IllegalArgumentException("integer division or modulo by zero");
                }
                return integral ? (Object) Math.floorDiv(a.longValue(), c.longValue())
                        : Math.floor(a.doubleValue() / c.doubleValue());
            }
            case "%" -> {
                if (c.doubleValue() == 0) {
                    throw new IllegalArgumentException("integer division or modulo by zero");
                }
                if (integral) {
                    return Math.floorMod(a.longValue(), c.longValue());
                }
                double m = a.doubleValue() % c.doubleValue();
                return m != 0 && (m < 0) != (c.doubleValue() < 0) ? m + c.doubleValue() : m;
            }
            case "**" -> {
                if (integral && c.longValue() >= 0) {
                    long result = 1;
                    for (long i = 0; i < c.longValue(); i++) {
                        result *= a.longValue();
                    }
                    return result;
                }
                return Math.pow(a.doubleValue(), c.doubleValue());
            }
            default -> throw new IllegalArgumentException("unknown operator " + op);
        }
    }

    private static IllegalArgumentException undefinedOperand(Undefined u) {
        return new IllegalArgumentException(u.name() == null ? "undefined value used in an operation"
                : "'" + u.name() + "' is undefined");
    }

    private static boolean isNumeric(Object v) {
        return v instanceof Number || v instanceof Boolean;
    }

    private static Number asNumber(Object v) {
        return v instanceof Boolean b ? (Number) (b ? 1L : 0L) : (Number) v;
    }

    private static Object negate(Object v) {
        requireNumber(v, "-");
        Number n = asNumber(v);
        return PyValues.isIntegral(n) ? (Object) (-n.longValue()) : -n.doubleValue();
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
            case "<" -> PyValues.compare(l, r) < 0;
            case ">" -> PyValues.compare(l, r) > 0;
            case "<=" -> PyValues.compare(l, r) <= 0;
            case ">=" -> PyValues.compare(l, r) >= 0;
            case "in" -> contains(r, l);
            case "not in" -> !contains(r, l);
            default -> throw new IllegalArgumentException("unknown comparison " + op);
        };
    }

    static boolean contains(Object container, Object item) {
        if (container instanceof String s) {
            if (!(item instanceof String sub)) {
                throw new IllegalArgumentException("'in <string>' requires string as left operand, not "
                        + PyValues.typeName(item));
            }
            return s.contains(sub);
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

    private List<Object> iterate(Object v, int pos) {
        try {
            return PyValues.iterate(v);
        } catch (IllegalArgumentException e) {
            throw error(e.getMessage(), pos);
        }
    }

    /** Jinja's {@code obj.name}: a method of the object if it has one, else its item {@code name}. */
    Object getAttribute(Object target, String name) {
        if (target instanceof Undefined) {
            return new Undefined(name);
        }
        Callable method = TemplateFilters.method(target, name);
        if (method != null) {
            return method;
        }
        if (target instanceof Map<?, ?> map) {
            return map.containsKey(name) ? map.get(name) : new Undefined(name);
        }
        return new Undefined(name);
    }

    /** Jinja's {@code obj[key]}: the item, else the attribute of a string key, else Undefined. */
    Object getItem(Object target, Object key) {
        if (target instanceof Map<?, ?> map) {
            if (map.containsKey(key)) {
                return map.get(key);
            }
            if (key instanceof Long l && map.containsKey(l.intValue())) {
                return map.get(l.intValue());
            }
        } else if ((target instanceof List<?> || target instanceof String) && PyValues.isIntegral(key)) {
            int n = PyValues.length(target);
            long i = ((Number) key).longValue();
            if (i < 0) {
                i += n;
            }
            if (i >= 0 && i < n) {
                return target instanceof List<?> list ? list.get((int) i) : codePointAt((String) target, (int) i);
            }
            return new Undefined(null);
        } else if (target == null) {
            throw new IllegalArgumentException("'NoneType' object is not subscriptable");
        }
        if (key instanceof String s && !(target instanceof Undefined)) {
            Callable method = TemplateFilters.method(target, s);
            if (method != null) {
                return method;
            }
        }
        return new Undefined(key instanceof String s ? s : null);
    }

    private static String codePointAt(String s, int index) {
        int offset = s.offsetByCodePoints(0, index);
        return new String(Character.toChars(s.codePointAt(offset)));
    }

    static Object slice(Object target, Object start, Object stop, Object step) {
        if (target instanceof Undefined) {
            return target;
        }
        List<Object> items;
        if (target instanceof String s) {
            items = PyValues.iterate(s);
        } else if (target instanceof List<?> list) {
            items = new ArrayList<>(list);
        } else {
            throw new IllegalArgumentException("'" + PyValues.typeName(target) + "' object is not subscriptable");
        }
        int n = items.size();
        long st = step == null ? 1 : ((Number) step).longValue();
        if (st == 0) {
            throw new IllegalArgumentException("slice step cannot be zero");
        }
        long lo;
        long hi;
        if (st > 0) {
            lo = start == null ? 0 : clampIndex(((Number) start).longValue(), n, 0, n);
            hi = stop == null ? n : clampIndex(((Number) stop).longValue(), n, 0, n);
        } else {
            lo = start == null ? n - 1 : clampIndex(((Number) start).longValue(), n, -1, n - 1);
            hi = stop == null ? -1 : clampIndex(((Number) stop).longValue(), n, -1, n - 1);
        }
        List<Object> out = new ArrayList<>();
        for (long i = lo; st > 0 ? i < hi : i > hi; i += st) {
            out.add(items.get((int) i));
        }
        if (target instanceof String) {
            StringBuilder sb = new StringBuilder();
            out.forEach(sb::append);
            return sb.toString();
        }
        return target instanceof Tuple ? new Tuple(out) : out;
    }

    private static long clampIndex(long i, int n, long min, long max) {
        if (i < 0) {
            i += n;
        }
        return Math.max(min, Math.min(max, i));
    }

    private Object range(List<Object> args, Map<String, Object> kwargs) {
        long start = 0;
        long stop;
        long step = 1;
        if (args.size() == 1) {
            stop = toLong(args.get(0), "range");
        } else if (args.size() == 2 || args.size() == 3) {
            start = toLong(args.get(0), "range");
            stop = toLong(args.get(1), "range");
            if (args.size() == 3) {
                step = toLong(args.get(2), "range");
            }
        } else {
            throw new IllegalArgumentException("range expected 1 to 3 arguments, got " + args.size());
        }
        if (step == 0) {
            throw new IllegalArgumentException("range() arg 3 must not be zero");
        }
        List<Object> out = new ArrayList<>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step) {
            out.add(i);
            if (out.size() > 1_000_000) {
                throw new IllegalArgumentException("range too large");
            }
        }
        return out;
    }

    static long toLong(Object v, String what) {
        if (!PyValues.isIntegral(v)) {
            throw new IllegalArgumentException(what + ": expected an integer, got '" + PyValues.typeName(v) + "'");
        }
        return ((Number) v).longValue();
    }

    private static Object arg(List<Object> args, int i, Object fallback) {
        return i < args.size() ? args.get(i) : fallback;
    }

    /** Python's {@code strftime} on the render's clock (the {@code now} variable if given). */
    private String strftime(String format) {
        TemporalAccessor t = now != null ? now : ZonedDateTime.now();
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 >= format.length()) {
                sb.append(c);
                continue;
            }
            char f = format.charAt(++i);
            switch (f) {
                case 'd' -> sb.append(String.format("%02d", t.get(ChronoField.DAY_OF_MONTH)));
                case 'e' -> sb.append(String.format("%2d", t.get(ChronoField.DAY_OF_MONTH)));
                case 'm' -> sb.append(String.format("%02d", t.get(ChronoField.MONTH_OF_YEAR)));
                case 'Y' -> sb.append(t.get(ChronoField.YEAR));
                case 'y' -> sb.append(String.format("%02d", t.get(ChronoField.YEAR) % 100));
                case 'b' -> sb.append(java.time.Month.of(t.get(ChronoField.MONTH_OF_YEAR))
                        .getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> sb.append(java.time.Month.of(t.get(ChronoField.MONTH_OF_YEAR))
                        .getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> sb.append(java.time.DayOfWeek.of(t.get(ChronoField.DAY_OF_WEEK))
                        .getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> sb.append(java.time.DayOfWeek.of(t.get(ChronoField.DAY_OF_WEEK))
                        .getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'j' -> sb.append(String.format("%03d", t.get(ChronoField.DAY_OF_YEAR)));
                case 'H' -> sb.append(String.format("%02d", fieldOrZero(t, ChronoField.HOUR_OF_DAY)));
                case 'I' -> sb.append(String.format("%02d", (fieldOrZero(t, ChronoField.HOUR_OF_DAY) + 11) % 12 + 1));
                case 'p' -> sb.append(fieldOrZero(t, ChronoField.HOUR_OF_DAY) < 12 ? "AM" : "PM");
                case 'M' -> sb.append(String.format("%02d", fieldOrZero(t, ChronoField.MINUTE_OF_HOUR)));
                case 'S' -> sb.append(String.format("%02d", fieldOrZero(t, ChronoField.SECOND_OF_MINUTE)));
                case '%' -> sb.append('%');
                default -> sb.append('%').append(f);
            }
        }
        return sb.toString();
    }

    private static int fieldOrZero(TemporalAccessor t, ChronoField field) {
        return t.isSupported(field) ? t.get(field) : 0;
    }

    /** For filters that call back into the runtime (e.g. map with a filter name). */
    Object applyFilter(String name, Object value, List<Object> args, Map<String, Object> kwargs) {
        return TemplateFilters.apply(name, value, args, kwargs, this);
    }
}
