package ai.punica.server;

import ai.punica.engine.Engine;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.AdapterUnavailableException;
import ai.punica.server.GenerationJob.Endpoint;
import ai.punica.tokenizer.ChatTemplate;
import ai.punica.tokenizer.TemplateException;
import ai.punica.tokenizer.Tokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Turns the JSON of a completions or chat request into a {@link GenerationJob}: field checks with
 * vLLM's rules, model resolution, prompt rendering and tokenization, and the context-length checks
 * vLLM makes before it queues anything (so every refusal is a 4xx before the stream starts).
 */
final class RequestParser {
    /** Most engine requests one HTTP request may fan out into (prompts × n). */
    static final int MAX_CHOICES = 16;
    /** OpenAI's default {@code max_tokens} for /v1/completions. */
    static final int COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

    private static final Set<String> SAMPLING_FIELDS = Set.of("model", "n", "stream", "stream_options", "stop",
            "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "logprobs", "presence_penalty",
            "frequency_penalty", "repetition_penalty", "ignore_eos", "stop_token_ids", "user", "logit_bias",
            "min_tokens", "skip_special_tokens", "include_stop_str_in_output", "echo");
    private static final Set<String> COMPLETION_FIELDS = union(SAMPLING_FIELDS, Set.of("prompt", "best_of",
            "suffix", "add_special_tokens"));
    private static final Set<String> CHAT_FIELDS = union(SAMPLING_FIELDS, Set.of("messages",
            "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
            "response_format", "add_generation_prompt", "chat_template_kwargs"));
    private static final Set<String> MESSAGE_FIELDS = Set.of("role", "content", "name");
    private static final Set<String> ROLES = Set.of("system", "developer", "user", "assistant", "tool");

    private final Engine engine;
    private final Tokenizer tokenizer;

    RequestParser(Engine engine) {
        this.engine = engine;
        this.tokenizer = engine.tokenizer();
    }

    GenerationJob completion(JsonBody body) {
        body.allowOnly(COMPLETION_FIELDS);
        body.requireNeutral("best_of", 1);
        body.requireNeutral("suffix", "");
        body.requireNeutral("echo", false);
        String model = model(body);
        String adapter = adapterOf(model);
        boolean addSpecial = body.boolOr("add_special_tokens", true);
        List<int[]> prompts = completionPrompts(body, addSpecial);
        int n = choicesPerPrompt(body, prompts.size());
        Integer maxTokens = maxTokens(body, "max_tokens");
        Integer logprobs = body.intOrNull("logprobs");
        if (logprobs != null && (logprobs < 0 || logprobs > SamplingParams.MAX_LOGPROBS)) {
            throw ApiException.badRequest("logprobs", "`logprobs` must be between 0 and "
                    + SamplingParams.MAX_LOGPROBS + ", got " + logprobs + ".");
        }
        int lp = logprobs == null ? -1 : logprobs;
        List<SamplingParams> params = new ArrayList<>();
        for (int[] prompt : prompts) {
            checkPromptFits(prompt.length, "prompt");
            int max = maxTokens != null ? maxTokens : COMPLETIONS_DEFAULT_MAX_TOKENS;
            checkRequestFits(prompt.length, max, "prompt", "max_tokens");
            params.add(sampling(body, max, lp));
        }
        return new GenerationJob(Endpoint.COMPLETIONS, model, adapter, prompts, params, n, stream(body),
                includeUsage(body), lp);
    }

    GenerationJob chat(JsonBody body) {
        body.allowOnly(CHAT_FIELDS);
        body.requireNeutral("echo", false);
        body.requireNeutral("tools", List.of());
        body.requireNeutral("tool_choice", "none");
        String model = model(body);
        String adapter = adapterOf(model);
        List<Map<String, Object>> messages = messages(body);
        int n = choicesPerPrompt(body, 1);
        Integer maxTokens = body.has("max_completion_tokens") ? maxTokens(body, "max_completion_tokens")
                : maxTokens(body, "max_tokens");
        String maxTokensParam = body.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        boolean logprobs = body.boolOr("logprobs", false);
        Integer top = body.intOrNull("top_logprobs");
        if (top != null && (top < 0 || top > SamplingParams.MAX_LOGPROBS)) {
            throw ApiException.badRequest("top_logprobs", "`top_logprobs` must be between 0 and "
                    + SamplingParams.MAX_LOGPROBS + ", got " + top + ".");
        }
        if (top != null && top > 0 && !logprobs) {
            throw ApiException.badRequest("top_logprobs", "`top_logprobs` needs `logprobs` set to true.");
        }
        JsonBody format = body.objectOrNull("response_format");
        if (format != null && !"text".equals(format.stringOr("type", "text"))) {
            throw ApiException.badRequest("response_format", "Only `response_format` {\"type\": \"text\"} is "
                    + "supported by this server.");
        }
        int[] prompt = renderChat(messages, body.boolOr("add_generation_prompt", true), templateVars(body));
        checkPromptFits(prompt.length, "messages");
        int max = maxTokens != null ? maxTokens : engine.maxModelLen() - prompt.length;
        checkRequestFits(prompt.length, max, "messages", maxTokensParam);
        int lp = logprobs ? (top == null ? 0 : top) : -1;
        return new GenerationJob(Endpoint.CHAT, model, adapter, List.of(prompt), List.of(sampling(body, max, lp)), n,
                stream(body), includeUsage(body), lp);
    }

    // ---- fields ---------------------------------------------------------------------------------

    /** vLLM makes {@code model} optional (the base model); OpenAI's SDKs always send it. */
    private String model(JsonBody body) {
        return body.stringOr("model", engine.baseModelName());
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

    private static int choicesPerPrompt(JsonBody body, int prompts) {
        int n = body.intOr("n", 1);
        if (n < 1 || n > MAX_CHOICES) {
            throw ApiException.badRequest("n", "`n` must be between 1 and " + MAX_CHOICES + ", got " + n + ".");
        }
        if (n * prompts > MAX_CHOICES) {
            throw ApiException.badRequest("n", "This request asks for " + prompts + " prompts × n=" + n + " = "
                    + n * prompts + " completions; at most " + MAX_CHOICES + " are allowed per request. "
                    + "Split it into several requests.");
        }
        return n;
    }

    private static Integer maxTokens(JsonBody body, String name) {
        Integer v = body.intOrNull(name);
        if (v != null && v < 1) {
            throw ApiException.badRequest(name, "`" + name + "` must be at least 1, got " + v + ".");
        }
        return v;
    }

    private static boolean stream(JsonBody body) {
        return body.boolOr("stream", false);
    }

    private static boolean includeUsage(JsonBody body) {
        JsonBody options = body.objectOrNull("stream_options");
        if (options == null) {
            return false;
        }
        if (!body.boolOr("stream", false)) {
            throw ApiException.badRequest("stream_options", "`stream_options` can only be set when `stream` is true.");
        }
        options.allowOnly(Set.of("include_usage", "continuous_usage_stats"));
        options.requireNeutral("continuous_usage_stats", false);
        return options.boolOr("include_usage", false);
    }

    private static SamplingParams sampling(JsonBody body, int maxTokens, int logprobs) {
        body.requireNeutral("logit_bias", Map.of());
        body.requireNeutral("min_tokens", 0);
        body.requireNeutral("skip_special_tokens", true);
        body.requireNeutral("include_stop_str_in_output", false);
        int topK = body.intOr("top_k", 0);
        Long seed = body.longOrNull("seed");
        SamplingParams params = SamplingParams.builder()
                .temperature(body.floatOr("temperature", 1f))
                .topP(body.floatOr("top_p", 1f))
                .topK(topK)
                .minP(body.floatOr("min_p", 0f))
                .repetitionPenalty(body.floatOr("repetition_penalty", 1f))
                .presencePenalty(body.floatOr("presence_penalty", 0f))
                .frequencyPenalty(body.floatOr("frequency_penalty", 0f))
                .seed(seed)
                .maxTokens(maxTokens)
                .stop(body.stringOrStrings("stop"))
                .stopTokenIds(body.intsOrEmpty("stop_token_ids"))
                .ignoreEos(body.boolOr("ignore_eos", false))
                .logprobs(logprobs)
                .build();
        params.validate(); // InvalidRequestException names the field; the handler answers 400
        return params;
    }

    // ---- prompts --------------------------------------------------------------------------------

    /** A string, an array of strings, an array of token ids, or an array of such arrays. */
    private List<int[]> completionPrompts(JsonBody body, boolean addSpecial) {
        JsonNode prompt = body.raw("prompt");
        if (prompt == null) {
            throw ApiException.badRequest("prompt", "`prompt` is required.");
        }
        List<int[]> out = new ArrayList<>();
        if (prompt.isTextual()) {
            out.add(encode(prompt.textValue(), addSpecial));
        } else if (prompt.isArray() && !prompt.isEmpty() && prompt.get(0).isIntegralNumber()) {
            out.add(tokenIds(prompt, "prompt"));
        } else if (prompt.isArray() && !prompt.isEmpty()) {
            if (prompt.size() > MAX_CHOICES) {
                throw ApiException.badRequest("prompt", "At most " + MAX_CHOICES + " prompts are allowed per "
                        + "request, got " + prompt.size() + ".");
            }
            int i = 0;
            for (JsonNode p : prompt) {
                if (p.isTextual()) {
                    out.add(encode(p.textValue(), addSpecial));
                } else if (p.isArray()) {
                    out.add(tokenIds(p, "prompt[" + i + "]"));
                } else {
                    throw body.wrongType("prompt", "a string, an array of strings or an array of token ids", prompt);
                }
                i++;
            }
        } else {
            throw body.wrongType("prompt", "a non-empty string, array of strings or array of token ids", prompt);
        }
        for (int[] p : out) {
            if (p.length == 0) {
                throw ApiException.badRequest("prompt", "The prompt is empty: it must contain at least one token.");
            }
        }
        return out;
    }

    private static int[] tokenIds(JsonNode array, String param) {
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode t = array.get(i);
            if (!t.isIntegralNumber() || !t.canConvertToInt()) {
                throw ApiException.badRequest(param, "`" + param + "` must be an array of token ids (integers); "
                        + "element " + i + " is " + JsonBody.kind(t) + ".");
            }
            ids[i] = t.intValue();
        }
        return ids;
    }

    private int[] encode(String text, boolean addSpecial) {
        return tokenizer.encode(text, addSpecial);
    }

    private static List<Map<String, Object>> messages(JsonBody body) {
        List<JsonBody> raw = body.objects("messages");
        if (raw.isEmpty()) {
            throw ApiException.badRequest("messages", "`messages` must contain at least one message.");
        }
        List<Map<String, Object>> out = new ArrayList<>();
        for (JsonBody m : raw) {
            m.allowOnly(MESSAGE_FIELDS);
            String role = m.requiredString("role");
            if (!ROLES.contains(role)) {
                throw ApiException.badRequest(m.param("role"), "`" + m.param("role") + "` must be one of "
                        + String.join(", ", ROLES.stream().sorted().toList()) + ", got \"" + role + "\".");
            }
            Map<String, Object> message = new LinkedHashMap<>();
            message.put("role", role);
            message.put("content", content(m));
            if (m.has("name")) {
                message.put("name", m.requiredString("name"));
            }
            out.add(message);
        }
        return out;
    }

    /** A string, or an array of text parts ({@code {"type":"text","text":...}}) joined with newlines. */
    private static String content(JsonBody m) {
        JsonNode c = m.raw("content");
        if (c == null) {
            return "";
        }
        if (c.isTextual()) {
            return c.textValue();
        }
        if (c.isArray()) {
            List<String> parts = new ArrayList<>();
            for (JsonNode part : c) {
                JsonNode type = part.get("type");
                JsonNode text = part.get("text");
                if (type == null || !"text".equals(type.asText()) || text == null || !text.isTextual()) {
                    throw ApiException.badRequest(m.param("content"), "Only text content parts "
                            + "({\"type\": \"text\", \"text\": \"...\"}) are supported in `" + m.param("content")
                            + "`.");
                }
                parts.add(text.textValue());
            }
            return String.join("\n", parts);
        }
        throw m.wrongType("content", "a string or an array of text parts", c);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> templateVars(JsonBody body) {
        JsonNode vars = body.raw("chat_template_kwargs");
        if (vars == null) {
            return Map.of();
        }
        if (!vars.isObject()) {
            throw body.wrongType("chat_template_kwargs", "an object", vars);
        }
        return OpenAiJson.MAPPER.convertValue(vars, Map.class);
    }

    private int[] renderChat(List<Map<String, Object>> messages, boolean addGenerationPrompt,
                             Map<String, Object> vars) {
        ChatTemplate template = tokenizer.chatTemplate().orElseThrow(() -> ApiException.badRequest("messages",
                "The model `" + engine.baseModelName() + "` has no chat template (tokenizer_config.json has no "
                        + "chat_template); use /v1/completions instead."));
        String text;
        try {
            text = template.render(messages, addGenerationPrompt, vars);
        } catch (TemplateException e) {
            throw ApiException.badRequest("messages", "The chat template refused these messages: " + e.getMessage());
        }
        return encodeRendered(text);
    }

    /**
     * Chat templates usually write the BOS token themselves ({@code {{ bos_token }}}); encoding with
     * add_special_tokens would then start the prompt with two of them, which the model never saw in
     * training. So special tokens are added only when the rendered text does not already begin with BOS.
     */
    private int[] encodeRendered(String text) {
        String bos = tokenizer.bosToken();
        boolean templateWroteBos = bos != null && !bos.isEmpty() && text.startsWith(bos);
        return tokenizer.encode(text, !templateWroteBos);
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

    private static Set<String> union(Set<String> a, Set<String> b) {
        var out = new java.util.HashSet<>(a);
        out.addAll(b);
        return Set.copyOf(out);
    }
}
