package ai.punica.jinja;

import ai.punica.jinja.Ast.Node;
import java.util.List;
import java.util.Map;

/**
 * A Jinja2 template, configured as transformers renders chat templates: {@code trim_blocks},
 * {@code lstrip_blocks}, the {@code loopcontrols} extension, no autoescaping, an immutable sandbox
 * (templates cannot modify the values they are given), Jinja2's default filters, tests and globals
 * ({@code range}, {@code dict}, {@code namespace}, {@code cycler}, {@code joiner}) and a
 * {@code tojson} that keeps non-ASCII text. Values follow Python semantics (unbounded ints,
 * Python's float repr and str.format). No template inheritance or includes.
 *
 * <p>Parsed once; {@link #render} is thread-safe. Values are plain Java objects: {@code Map},
 * {@code List}, {@code String}, {@code Number}, {@code Boolean}, {@code null}; functions the host
 * offers (transformers' {@code raise_exception}) are {@link Callable}s.
 */
public final class Template {
    private final String source;
    private final List<Node> nodes;

    private Template(String source, List<Node> nodes) {
        this.source = source;
        this.nodes = nodes;
    }

    /**
     * Parses a template.
     *
     * @throws TemplateException on a syntax error, with its line and column
     */
    public static Template compile(String source) {
        try {
            return new Template(source, Parser.parse(source));
        } catch (StackOverflowError e) {
            throw new TemplateException("template syntax error: expressions nest too deeply to parse");
        }
    }

    public String source() {
        return source;
    }

    /** Renders with {@link Limits#DEFAULT}. */
    public String render(Map<String, Object> variables) {
        return render(variables, Limits.DEFAULT);
    }

    /**
     * Renders the template.
     *
     * @throws TemplateException when the template fails: an undefined value used, a type error, a limit
     *                           reached, or an error raised by a {@link Callable} (its message kept)
     */
    public String render(Map<String, Object> variables, Limits limits) {
        try {
            return new Renderer(source, limits).render(nodes, variables);
        } catch (StackOverflowError e) {
            throw new TemplateException("template recursion exhausted the stack before reaching the limit of "
                    + limits.maxDepth() + " levels");
        }
    }
}
