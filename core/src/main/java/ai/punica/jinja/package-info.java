/**
 * A Jinja2 interpreter configured as transformers renders chat templates
 * ({@link ai.punica.jinja.Template}): trim_blocks, lstrip_blocks, loop controls, an immutable
 * sandbox, no autoescaping, Jinja2's filters, tests and globals, Python value semantics
 * (unbounded ints, float repr, str.format and %-formatting, Markup escaping).
 *
 * <pre>
 * source ─► Lexer (text / tags, whitespace control) ─► Parser (statements, expressions) ─► Ast
 * Ast + variables ─► Renderer (scopes, loops, macros, Limits) ─► Operators / Filters / Tests / Methods ─► text
 * </pre>
 *
 * <p>It knows nothing of chat or tokenizers: {@code ai.punica.tokenizer.ChatTemplate} builds the
 * chat context on top of it. Conformance with transformers' {@code apply_chat_template} is checked
 * by {@code ChatTemplateConformanceTest} against fixtures/templates/references.json.
 */
package ai.punica.jinja;
