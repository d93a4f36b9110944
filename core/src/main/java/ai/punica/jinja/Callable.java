package ai.punica.jinja;

import java.util.List;
import java.util.Map;

/**
 * Something a template can call: a global function the host passes in (transformers'
 * {@code raise_exception}), a macro, a bound str/dict/list method. An {@link IllegalArgumentException}
 * it throws becomes a {@link TemplateException} at the call's position.
 */
@FunctionalInterface
public interface Callable {
    Object call(List<Object> args, Map<String, Object> kwargs);
}
