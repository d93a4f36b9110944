package ai.punica.tokenizer;

import ai.punica.jinja.Callable;
import ai.punica.jinja.Limits;
import ai.punica.jinja.Template;
import ai.punica.jinja.TemplateException;
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
 * A HuggingFace chat template ({@code tokenizer_config.json} "chat_template") rendered as
 * transformers' {@code apply_chat_template} renders it: a {@link Template} (Jinja2 as transformers
 * configures it) given {@code messages}, {@code add_generation_prompt}, {@code tools} and
 * {@code documents} (None unless passed), every special token of tokenizer_config.json
 * ({@code bos_token}, {@code eos_token}, {@code unk_token}, {@code pad_token}, ...), and the
 * globals {@code raise_exception(msg)} and {@code strftime_now(fmt)}. Parsed once; {@link #render}
 * is thread-safe.
 *
 * <p>Extra variables (e.g. {@code tools}, {@code date_string}) override those. An extra variable
 * {@code now} (a {@link TemporalAccessor} such as {@link LocalDate}, or an ISO-8601 string) fixes
 * the clock of {@code strftime_now}, which otherwise reads the system clock.
 */
public final class ChatTemplate {
    private final Template template;
    private final Map<String, Object> specialTokens;

    private ChatTemplate(Template template, Map<String, Object> specialTokens) {
        this.template = template;
        this.specialTokens = specialTokens;
    }

    /**
     * Parses a template with only BOS and EOS tokens in its context.
     *
     * @throws TemplateException on a syntax error, with its line and column
     */
    public static ChatTemplate compile(String source, String bosToken, String eosToken) {
        Map<String, Object> tokens = new HashMap<>();
        if (bosToken != null) {
            tokens.put("bos_token", bosToken);
        }
        if (eosToken != null) {
            tokens.put("eos_token", eosToken);
        }
        return compile(source, tokens);
    }

    /**
     * Parses a template; {@code specialTokens} maps names such as {@code bos_token} or
     * {@code additional_special_tokens} to their text (or list of texts), as transformers'
     * {@code special_tokens_map} does.
     *
     * @throws TemplateException on a syntax error, with its line and column
     */
    public static ChatTemplate compile(String source, Map<String, Object> specialTokens) {
        return new ChatTemplate(Template.compile(source), Map.copyOf(specialTokens));
    }

    public String source() {
        return template.source();
    }

    /**
     * Renders the prompt for {@code messages} (each a map with at least "role" and "content").
     *
     * @throws TemplateException when the template fails, including its own {@code raise_exception}
     */
    public String render(List<Map<String, Object>> messages, boolean addGenerationPrompt,
            Map<String, Object> extraVariables) {
        Map<String, Object> variables = new HashMap<>(specialTokens);
        variables.put("messages", messages);
        variables.put("add_generation_prompt", addGenerationPrompt);
        variables.put("tools", null);
        variables.put("documents", null);
        if (extraVariables != null) {
            variables.putAll(extraVariables);
        }
        TemporalAccessor now = clock(variables.get("now"));
        variables.put("raise_exception", (Callable) (args, kwargs) -> {
            throw new IllegalArgumentException(args.isEmpty() ? "raise_exception called" : String.valueOf(args.getFirst()));
        });
        variables.put("strftime_now", (Callable) (args, kwargs) ->
                Strftime.format(now != null ? now : ZonedDateTime.now(), args.isEmpty() ? "" : String.valueOf(args.getFirst())));
        return template.render(variables, Limits.DEFAULT);
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
