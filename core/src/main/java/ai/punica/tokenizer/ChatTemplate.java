package ai.punica.tokenizer;

import ai.punica.tokenizer.TemplateAst.Node;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.ZonedDateTime;
import java.time.format.DateTimeParseException;
import java.time.temporal.TemporalAccessor;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A HuggingFace chat template ({@code tokenizer_config.json} "chat_template"): a Jinja2 template
 * rendered the way transformers' {@code apply_chat_template} does, with {@code trim_blocks} and
 * {@code lstrip_blocks}, {@code raise_exception(msg)} and {@code strftime_now(fmt)}. Parsed once;
 * {@link #render} is thread-safe.
 *
 * <p>Variables: {@code messages}, {@code add_generation_prompt}, {@code bos_token},
 * {@code eos_token}, then every entry of {@code extraVariables} (e.g. {@code tools},
 * {@code date_string}), which may override them. An extra variable {@code now} (a
 * {@link TemporalAccessor} such as {@link LocalDate}, or an ISO-8601 string) fixes the clock of
 * {@code strftime_now}, which otherwise reads the system clock.
 *
 * <p>Values are plain Java objects: {@code Map}, {@code List}, {@code String}, {@code Number},
 * {@code Boolean}, {@code null}.
 */
public final class ChatTemplate {
    private final String source;
    private final List<Node> template;
    private final String bosToken;
    private final String eosToken;

    private ChatTemplate(String source, List<Node> template, String bosToken, String eosToken) {
        this.source = source;
        this.template = template;
        this.bosToken = bosToken;
        this.eosToken = eosToken;
    }

    /**
     * Parses a template.
     *
     * @throws TemplateException on a syntax error, with its line and column
     */
    public static ChatTemplate compile(String source, String bosToken, String eosToken) {
        return new ChatTemplate(source, TemplateParser.parse(source), bosToken, eosToken);
    }

    public String source() {
        return source;
    }

    /**
     * Renders the prompt for {@code messages} (each a map with at least "role" and "content").
     *
     * @throws TemplateException when the template fails, including its own {@code raise_exception}
     */
    public String render(List<Map<String, Object>> messages, boolean addGenerationPrompt,
            Map<String, Object> extraVariables) {
        Map<String, Object> variables = new HashMap<>();
        variables.put("messages", messages);
        variables.put("add_generation_prompt", addGenerationPrompt);
        variables.put("bos_token", bosToken);
        variables.put("eos_token", eosToken);
        if (extraVariables != null) {
            variables.putAll(extraVariables);
        }
        TemporalAccessor now = clock(variables.get("now"));
        String trimmedSource = source.endsWith("\n") ? source.substring(0, source.length() - 1) : source;
        return new TemplateRuntime(trimmedSource, now).render(template, variables);
    }

    private static TemporalAccessor clock(Object now) {
        if (now == null) {
            return null;
        }
        if (now instanceof TemporalAccessor t) {
            return t;
        }
        String text = now.toString();
        for (var parser : List.<java.util.function.Function<String, TemporalAccessor>>of(
                ZonedDateTime::parse, OffsetDateTime::parse, LocalDateTime::parse, LocalDate::parse)) {
            try {
                return parser.apply(text);
            } catch (DateTimeParseException e) {
                // try the next format
            }
        }
        throw new IllegalArgumentException("variable 'now' must be a java.time value or an ISO-8601 date, got \""
                + text + "\"");
    }
}
