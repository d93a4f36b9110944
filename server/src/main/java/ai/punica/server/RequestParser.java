package ai.punica.server;

import ai.punica.engine.Engine;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.AdapterUnavailableException;
import ai.punica.server.GenerationJob.Endpoint;
import ai.punica.server.OpenAiRequests.ChatBody;
import ai.punica.server.OpenAiRequests.CompletionBody;
import ai.punica.server.OpenAiRequests.Message;
import ai.punica.server.OpenAiRequests.SamplingFields;
import ai.punica.tokenizer.ChatTemplate;
import ai.punica.jinja.TemplateException;
import ai.punica.tokenizer.Tokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Validates a bound completions or chat body ({@link OpenAiRequests}) in one place and turns it into
 * a {@link GenerationJob}: value checks with vLLM's rules, model resolution, prompt rendering and
 * tokenization, and the context-length checks vLLM makes before it queues anything (so every
 * refusal is a 4xx before the stream starts).
 */
final class RequestParser {
    /** Default for the most engine requests one HTTP request may fan out into (prompts × n). */
    static final int DEFAULT_MAX_CHOICES = 128;
    /** OpenAI's default {@code max_tokens} for /v1/completions. */
    static final int COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

    private static final Set<String> ROLES = Set.of("system", "developer", "user", "assistant", "tool");

    private final Engine engine;
    private final Tokenizer tokenizer;
    private final int maxChoices;

    RequestParser(Engine engine, int maxChoices) {
        this.engine = engine;
        this.tokenizer = engine.tokenizer();
        this.maxChoices = maxChoices;
    }

    GenerationJob completion(CompletionBody body) {
        refuseUnlessNeutral("best_of", body.bestOf(), 1);
        refuseUnlessNeutral("suffix", body.suffix(), "");
        String model = model(body.model());
        String adapter = adapterOf(model);
        boolean addSpecial = !Boolean.FALSE.equals(body.addSpecialTokens());
        List<int[]> prompts = completionPrompts(body.prompt(), addSpecial);
        int n = choicesPerPrompt(body.n(), prompts.size());
        boolean echoed = Boolean.TRUE.equals(body.echo());
        // As vLLM: max_tokens 0 with echo scores the prompt and generates nothing (the engine runs one token, which
        // the response leaves out); without echo, 0 is refused as any count below 1.
        boolean echoOnly = echoed && body.maxTokens() != null && body.maxTokens() == 0;
        Integer maxTokens = echoOnly ? null : maxTokens(body.maxTokens(), "max_tokens");
        int lp = logprobCount(body.logprobs(), "logprobs", "sample");
        List<SamplingParams> params = new ArrayList<>();
        for (int[] prompt : prompts) {
            checkPromptFits(prompt.length, "prompt");
            int max = echoOnly ? 1 : maxTokens != null ? maxTokens : COMPLETIONS_DEFAULT_MAX_TOKENS;
            checkRequestFits(prompt.length, echoOnly ? 0 : max, "prompt", "max_tokens");
            SamplingParams p = sampling(body, max, lp);
            if (echoed && lp >= 0 && p.promptLogprobs() < 0) {
                // As vLLM: echo with logprobs asks for the prompt's log-probabilities with logprobs' k (each entry
                // carries the prompt token's own log-probability besides the top k), which the legacy arrays show.
                p = p.toBuilder().promptLogprobs(lp).build();
            }
            if (echoOnly) {
                p = p.toBuilder().logprobs(-1).build(); // the one token is not shown, nor are its logprobs
            }
            params.add(p);
        }
        List<String> echo = echoed ? echoTexts(body.prompt(), prompts) : null;
        return new GenerationJob(Endpoint.COMPLETIONS, model, adapter, prompts, params, n, stream(body),
                includeUsage(body), lp, echo, echoOnly);
    }

    GenerationJob chat(ChatBody body) {
        if (body.tools() != null && !(body.tools().isArray() && body.tools().isEmpty())) {
            throw ApiException.badRequest("tools", "`tools` is not supported by this server (it has no constrained "
                    + "decoding for tool calls yet); omit it.");
        }
        if (body.toolChoice() != null && !"none".equals(body.toolChoice().asText(null))) {
            throw ApiException.badRequest("tool_choice", "`tool_choice` is not supported by this server (got "
                    + RequestBodies.abbreviate(body.toolChoice()) + "); omit it or send \"none\".");
        }
        JsonNode format = body.responseFormat();
        if (format != null && !"text".equals(format.path("type").asText("text"))) {
            throw ApiException.badRequest("response_format", "Only `response_format` {\"type\": \"text\"} is "
                    + "supported by this server (it has no constrained decoding yet).");
        }
        String model = model(body.model());
        String adapter = adapterOf(model);
        List<Map<String, Object>> messages = messages(body.messages());
        int n = choicesPerPrompt(body.n(), 1);
        String maxTokensParam = body.maxCompletionTokens() != null ? "max_completion_tokens" : "max_tokens";
        Integer maxTokens = maxTokens(body.maxCompletionTokens() != null ? body.maxCompletionTokens()
                : body.maxTokens(), maxTokensParam);
        boolean logprobs = Boolean.TRUE.equals(body.logprobs());
        Integer top = body.topLogprobs();
        if (top != null && top >= -1 && top != 0 && !logprobs) {
            throw ApiException.badRequest("top_logprobs", "`top_logprobs` needs `logprobs` set to true.");
        }
        int topCount = logprobCount(top, "top_logprobs", "sample");
        Map<String, Object> vars = body.chatTemplateKwargs() == null ? Map.of() : body.chatTemplateKwargs();
        int[] prompt = renderChat(messages, !Boolean.FALSE.equals(body.addGenerationPrompt()), vars,
                Boolean.TRUE.equals(body.addSpecialTokens()));
        checkPromptFits(prompt.length, "messages");
        int max = maxTokens != null ? maxTokens : engine.maxModelLen() - prompt.length;
        checkRequestFits(prompt.length, max, "messages", maxTokensParam);
        int lp = logprobs ? Math.max(topCount, 0) : -1;
        refuseUnlessNeutral("echo", body.echo(), false);
        return new GenerationJob(Endpoint.CHAT, model, adapter, List.of(prompt), List.of(sampling(body, max, lp)), n,
                stream(body), includeUsage(body), lp, null, false);
    }

    // ---- fields ---------------------------------------------------------------------------------

    /** vLLM makes {@code model} optional (the base model); OpenAI's SDKs always send it. */
    private String model(String model) {
        return model != null ? model : engine.baseModelName();
    }

    /**
     * The adapter a model id names: null for the base model; a name nobody registered is looked up in the
     * engine's adapter sources and loaded first (blocking this handler, not the engine); 404 for a name no
     * source has, 400 naming the file and field for one whose files do not load.
     */
    String adapterOf(String model) {
        if (model.equals(engine.baseModelName())) {
            return null;
        }
        try {
            engine.adapters().resolve(model);
        } catch (AdapterUnavailableException e) {
            throw e.missing() ? ApiException.modelNotFound(model) : ApiException.badRequest("model", e.getMessage());
        }
        return model;
    }

    private int choicesPerPrompt(Integer requested, int prompts) {
        int n = requested == null ? 1 : requested;
        if (n < 1 || n > maxChoices) {
            throw ApiException.badRequest("n", "`n` must be between 1 and " + maxChoices + ", got " + n + ".");
        }
        if (n * prompts > maxChoices) {
            throw ApiException.badRequest("n", "This request asks for " + prompts + " prompts × n=" + n + " = "
                    + n * prompts + " completions; at most " + maxChoices + " are allowed per request "
                    + "(--max-choices). Split it into several requests.");
        }
        return n;
    }

    private static Integer maxTokens(Integer v, String name) {
        if (v != null && v < 1) {
            throw ApiException.badRequest(name, "`" + name + "` must be at least 1, got " + v + ".");
        }
        return v;
    }

    private static boolean stream(SamplingFields body) {
        return Boolean.TRUE.equals(body.stream());
    }

    private static boolean includeUsage(SamplingFields body) {
        OpenAiRequests.StreamOptions options = body.streamOptions();
        if (options == null) {
            return false;
        }
        if (!stream(body)) {
            throw ApiException.badRequest("stream_options", "`stream_options` can only be set when `stream` is true.");
        }
        refuseUnlessNeutral("stream_options.continuous_usage_stats", options.continuousUsageStats(), false);
        return Boolean.TRUE.equals(options.includeUsage());
    }

    /**
     * Fields OpenAI or vLLM define that this server does not implement: accepted with their neutral
     * value (clients often send the defaults explicitly), refused otherwise with a message that says
     * so, rather than silently ignored.
     */
    private static void refuseUnlessNeutral(String param, Object value, Object neutral) {
        boolean isNeutral = value == null || Objects.equals(value, neutral)
                || value instanceof Map<?, ?> m && m.isEmpty()
                || value instanceof Number a && neutral instanceof Number b && a.doubleValue() == b.doubleValue();
        if (!isNeutral) {
            String shown = value instanceof String str ? "\"" + str + "\"" : String.valueOf(value);
            throw ApiException.badRequest(param, "`" + param + "` is not supported by this server (got "
                    + (shown.length() <= 60 ? shown : shown.substring(0, 57) + "...") + "); omit it.");
        }
    }

    private SamplingParams sampling(SamplingFields body, int maxTokens, int logprobs) {
        SamplingParams params = SamplingParams.builder()
                .temperature(or(body.temperature(), 1f))
                .topP(or(body.topP(), 1f))
                .topK(body.topK() == null ? 0 : body.topK())
                .minP(or(body.minP(), 0f))
                .repetitionPenalty(or(body.repetitionPenalty(), 1f))
                .presencePenalty(or(body.presencePenalty(), 0f))
                .frequencyPenalty(or(body.frequencyPenalty(), 0f))
                .seed(body.seed())
                .maxTokens(maxTokens)
                .stop(stopStrings(body.stop()))
                .stopTokenIds(body.stopTokenIds() == null ? List.of() : body.stopTokenIds())
                .ignoreEos(Boolean.TRUE.equals(body.ignoreEos()))
                .logprobs(logprobs)
                .skipSpecialTokens(!Boolean.FALSE.equals(body.skipSpecialTokens()))
                .includeStopStrInOutput(Boolean.TRUE.equals(body.includeStopStrInOutput()))
                .logitBias(logitBias(body.logitBias()))
                .minTokens(body.minTokens() == null ? 0 : body.minTokens())
                .promptLogprobs(promptLogprobs(body))
                .build();
        params.validate(); // InvalidRequestException names the field; the handler answers 400
        return params;
    }

    /**
     * OpenAI's {@code logit_bias}: token ids as JSON object keys (strings of integers); values and the vocabulary
     * are checked by {@link SamplingParams#validate} and the engine.
     */
    private static Map<Integer, Float> logitBias(Map<String, Float> raw) {
        if (raw == null || raw.isEmpty()) {
            return Map.of();
        }
        if (raw.size() > SamplingParams.MAX_LOGIT_BIAS) {
            throw ApiException.badRequest("logit_bias", "`logit_bias` may bias at most " + SamplingParams.MAX_LOGIT_BIAS
                    + " tokens, got " + raw.size() + ".");
        }
        Map<Integer, Float> out = new LinkedHashMap<>();
        for (Map.Entry<String, Float> e : raw.entrySet()) {
            int token;
            try {
                token = Integer.parseInt(e.getKey().strip());
            } catch (NumberFormatException notInt) {
                String key = e.getKey().length() <= 40 ? e.getKey() : e.getKey().substring(0, 37) + "...";
                throw ApiException.badRequest("logit_bias", "`logit_bias` keys must be token ids (integers), got \""
                        + key + "\".");
            }
            if (e.getValue() == null) {
                throw ApiException.badRequest("logit_bias", "`logit_bias` of token " + token + " is null; send a "
                        + "number between -100 and 100.");
            }
            if (out.put(token, e.getValue()) != null) {
                throw ApiException.badRequest("logit_bias", "`logit_bias` names token " + token + " twice.");
            }
        }
        return out;
    }

    /**
     * vLLM's {@code prompt_logprobs}; as vLLM, not with {@code stream} (above 0, or -1); 0 with {@code stream} is
     * accepted and returns nothing (the streamed chunks have no place for them).
     */
    private int promptLogprobs(SamplingFields body) {
        Integer k = body.promptLogprobs();
        if (k == null) {
            return -1;
        }
        if (stream(body) && (k > 0 || k == -1)) {
            throw ApiException.badRequest("prompt_logprobs", "`prompt_logprobs` are not available when "
                    + "`stream` is true.");
        }
        int count = logprobCount(k, "prompt_logprobs", "prompt");
        return stream(body) ? -1 : count;
    }

    /**
     * A log-probability count as vLLM reads it: null is none (-1 here), -1 is the whole vocabulary (the model's
     * {@code vocab_size}), other negatives are refused; a count above {@link SamplingParams#MAX_LOGPROBS} (this
     * server's fixed {@code max_logprobs}, vLLM's default) is refused with vLLM's message, which clients match on.
     */
    private int logprobCount(Integer k, String param, String kind) {
        if (k == null) {
            return -1;
        }
        if (k < -1) {
            throw ApiException.badRequest(param, "`" + param + "` must be -1 (every token of the vocabulary) or at "
                    + "least 0, got " + k + ".");
        }
        int count = k == -1 ? engine.vocabSize() : k;
        if (count > SamplingParams.MAX_LOGPROBS) {
            // vLLM's words and its (parameter=, value=) suffix, which clients match on
            throw ApiException.badRequest(param, "Requested " + kind + " logprobs of " + count + ", which is greater "
                    + "than max allowed: " + SamplingParams.MAX_LOGPROBS + " (parameter=" + param + ", value=" + count
                    + ")" + (k == -1 ? "; -1 asks for every token of the model's " + count + "-token vocabulary."
                    : ""));
        }
        return count;
    }

    private static float or(Float v, float fallback) {
        return v == null ? fallback : v;
    }

    /** OpenAI's {@code stop}: a string or an array of strings. */
    private static List<String> stopStrings(JsonNode stop) {
        if (stop == null || stop.isNull()) {
            return List.of();
        }
        if (stop.isTextual()) {
            return List.of(stop.textValue());
        }
        List<String> out = new ArrayList<>();
        if (stop.isArray()) {
            for (JsonNode e : stop) {
                if (!e.isTextual()) {
                    out = null;
                    break;
                }
                out.add(e.textValue());
            }
        }
        if (out == null || !stop.isArray()) {
            throw ApiException.badRequest("stop", "`stop` must be a string or an array of strings, got "
                    + RequestBodies.kind(stop) + " " + RequestBodies.abbreviate(stop) + ".");
        }
        return out;
    }

    // ---- prompts --------------------------------------------------------------------------------

    /** A string, an array of strings, an array of token ids, or an array of such arrays. */
    private List<int[]> completionPrompts(JsonNode prompt, boolean addSpecial) {
        if (prompt == null || prompt.isNull()) {
            throw ApiException.badRequest("prompt", "`prompt` is required.");
        }
        List<int[]> out = new ArrayList<>();
        if (prompt.isTextual()) {
            out.add(tokenizer.encode(prompt.textValue(), addSpecial));
        } else if (prompt.isArray() && !prompt.isEmpty() && prompt.get(0).isIntegralNumber()) {
            out.add(tokenIds(prompt, "prompt"));
        } else if (prompt.isArray() && !prompt.isEmpty()) {
            if (prompt.size() > maxChoices) {
                throw ApiException.badRequest("prompt", "At most " + maxChoices + " prompts are allowed per "
                        + "request, got " + prompt.size() + ".");
            }
            int i = 0;
            for (JsonNode p : prompt) {
                if (p.isTextual()) {
                    out.add(tokenizer.encode(p.textValue(), addSpecial));
                } else if (p.isArray()) {
                    out.add(tokenIds(p, "prompt[" + i + "]"));
                } else {
                    throw ApiException.badRequest("prompt", "`prompt` must be a string, an array of strings or an "
                            + "array of token ids, got " + RequestBodies.abbreviate(prompt) + ".");
                }
                i++;
            }
        } else {
            throw ApiException.badRequest("prompt", "`prompt` must be a non-empty string, array of strings or array "
                    + "of token ids, got " + RequestBodies.kind(prompt) + " " + RequestBodies.abbreviate(prompt) + ".");
        }
        for (int[] p : out) {
            if (p.length == 0) {
                throw ApiException.badRequest("prompt", "The prompt is empty: it must contain at least one token.");
            }
        }
        return out;
    }

    /** What {@code echo} puts before the output: each prompt as sent, or the text of its token ids. */
    private List<String> echoTexts(JsonNode prompt, List<int[]> ids) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < ids.size(); i++) {
            JsonNode p = prompt.isArray() && !prompt.get(0).isIntegralNumber() ? prompt.get(i) : prompt;
            out.add(p.isTextual() ? p.textValue() : tokenizer.decode(ids.get(i), true));
        }
        return out;
    }

    private static int[] tokenIds(JsonNode array, String param) {
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode t = array.get(i);
            if (!t.isIntegralNumber() || !t.canConvertToInt()) {
                throw ApiException.badRequest(param, "`" + param + "` must be an array of token ids (integers); "
                        + "element " + i + " is " + RequestBodies.kind(t) + ".");
            }
            ids[i] = t.intValue();
        }
        return ids;
    }

    /** The messages as the chat template sees them (HF's shape: role, content, and the tool fields when sent). */
    private static List<Map<String, Object>> messages(List<Message> raw) {
        if (raw == null) {
            throw ApiException.badRequest("messages", "`messages` is required.");
        }
        if (raw.isEmpty()) {
            throw ApiException.badRequest("messages", "`messages` must contain at least one message.");
        }
        List<Map<String, Object>> out = new ArrayList<>();
        for (int i = 0; i < raw.size(); i++) {
            Message m = raw.get(i);
            String at = "messages[" + i + "].";
            if (m == null) {
                throw ApiException.badRequest("messages[" + i + "]", "`messages[" + i + "]` must be an object, got null.");
            }
            if (m.role() == null) {
                throw ApiException.badRequest(at + "role", "`" + at + "role` is required.");
            }
            if (!ROLES.contains(m.role())) {
                throw ApiException.badRequest(at + "role", "`" + at + "role` must be one of "
                        + String.join(", ", ROLES.stream().sorted().toList()) + ", got \"" + m.role() + "\".");
            }
            Map<String, Object> message = new LinkedHashMap<>();
            message.put("role", m.role());
            message.put("content", content(m.content(), at + "content"));
            if (m.name() != null) {
                message.put("name", m.name());
            }
            if (m.toolCalls() != null) {
                message.put("tool_calls", m.toolCalls());
            }
            if (m.toolCallId() != null) {
                message.put("tool_call_id", m.toolCallId());
            }
            out.add(message);
        }
        return out;
    }

    /**
     * A string, or an array of text parts ({@code {"type":"text","text":...}}) joined with newlines;
     * null (an assistant turn that only called tools) is the empty string.
     */
    private static String content(JsonNode c, String param) {
        if (c == null || c.isNull()) {
            return "";
        }
        if (c.isTextual()) {
            return c.textValue();
        }
        if (c.isArray()) {
            List<String> parts = new ArrayList<>();
            for (JsonNode part : c) {
                JsonNode text = part.get("text");
                if (!"text".equals(part.path("type").asText()) || text == null || !text.isTextual()) {
                    throw ApiException.badRequest(param, "Only text content parts ({\"type\": \"text\", \"text\": "
                            + "\"...\"}) are supported in `" + param + "`.");
                }
                parts.add(text.textValue());
            }
            return String.join("\n", parts);
        }
        throw ApiException.badRequest(param, "`" + param + "` must be a string or an array of text parts, got "
                + RequestBodies.kind(c) + " " + RequestBodies.abbreviate(c) + ".");
    }

    /** The token ids a chat request's messages render to, as /v1/chat/completions would run them. */
    int[] chatPrompt(List<Message> messages, boolean addGenerationPrompt, Map<String, Object> vars,
                     boolean addSpecialTokens) {
        return renderChat(messages(messages), addGenerationPrompt, vars == null ? Map.of() : vars, addSpecialTokens);
    }

    /**
     * Renders the messages and encodes the text as transformers' {@code apply_chat_template(tokenize=True)} and
     * vLLM do: the template writes the special tokens it wants ({@code {{ bos_token }}}), so none are added to
     * the rendered text unless the request asks for them ({@code add_special_tokens: true}, vLLM's extension).
     */
    private int[] renderChat(List<Map<String, Object>> messages, boolean addGenerationPrompt,
                             Map<String, Object> vars, boolean addSpecialTokens) {
        ChatTemplate template = tokenizer.chatTemplate().orElseThrow(() -> ApiException.badRequest("messages",
                tokenizer.chatTemplateProblem().map(problem -> "The model `" + engine.baseModelName()
                        + "` cannot serve chat requests: " + problem + "; use /v1/completions instead.")
                        .orElse("The model `" + engine.baseModelName() + "` has no chat template (tokenizer_config.json "
                                + "has no chat_template); use /v1/completions instead.")));
        String text;
        try {
            text = template.render(messages, addGenerationPrompt, vars);
        } catch (TemplateException e) {
            throw ApiException.badRequest("messages", "The chat template refused these messages: " + e.getMessage());
        }
        return tokenizer.encode(text, addSpecialTokens);
    }

    // ---- context --------------------------------------------------------------------------------

    private void checkPromptFits(int promptTokens, String param) {
        int limit = engine.maxModelLen();
        if (promptTokens >= limit) {
            throw ApiException.contextLengthExceeded(param, "This model's maximum context length is " + limit
                    + " tokens. However, your " + ("messages".equals(param) ? "messages resulted in " : "prompt has ")
                    + promptTokens + " tokens, which leaves no room to generate. Shorten the "
                    + ("messages".equals(param) ? "messages." : "prompt."));
        }
    }

    private void checkRequestFits(int promptTokens, int maxTokens, String promptParam, String maxParam) {
        int limit = engine.maxModelLen();
        if ((long) promptTokens + maxTokens > limit) {
            String what = "messages".equals(promptParam) ? "messages" : "prompt";
            throw ApiException.contextLengthExceeded(maxParam, "This model's maximum context length is " + limit
                    + " tokens. However, you requested " + ((long) promptTokens + maxTokens) + " tokens ("
                    + promptTokens + " in the " + what + ", " + maxTokens + " in the completion). Please reduce the "
                    + "length of the " + what + " or `" + maxParam + "`.");
        }
    }
}
