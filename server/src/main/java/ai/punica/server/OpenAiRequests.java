package ai.punica.server;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.Map;

/**
 * The request bodies of OpenAI's API and vLLM's extensions, as Jackson binds them (snake_case on the
 * wire; absent and null fields are null). {@link RequestBodies} does the binding; {@link RequestParser}
 * validates a bound body in one place. Fields whose JSON type varies ({@code prompt}, {@code stop},
 * {@code content}) stay {@link JsonNode}s and are read there.
 */
final class OpenAiRequests {
    private OpenAiRequests() {
    }

    /** {@code POST /v1/completions}. */
    record CompletionBody(String model, JsonNode prompt, Integer n, Boolean stream, StreamOptions streamOptions,
                          JsonNode stop, Integer maxTokens, Float temperature, Float topP, Integer topK, Float minP,
                          Long seed, Integer logprobs, Float presencePenalty, Float frequencyPenalty,
                          Float repetitionPenalty, Boolean ignoreEos, List<Integer> stopTokenIds, String user,
                          Map<String, Float> logitBias, Integer minTokens, Boolean skipSpecialTokens,
                          Boolean includeStopStrInOutput, Boolean echo, Integer bestOf, String suffix,
                          Boolean addSpecialTokens, Integer promptLogprobs) implements SamplingFields {
    }

    /** {@code POST /v1/chat/completions}. */
    record ChatBody(String model, List<Message> messages, Integer n, Boolean stream, StreamOptions streamOptions,
                    JsonNode stop, Integer maxTokens, Integer maxCompletionTokens, Float temperature, Float topP,
                    Integer topK, Float minP, Long seed, Boolean logprobs, Integer topLogprobs, Float presencePenalty,
                    Float frequencyPenalty, Float repetitionPenalty, Boolean ignoreEos, List<Integer> stopTokenIds,
                    String user, Map<String, Float> logitBias, Integer minTokens, Boolean skipSpecialTokens,
                    Boolean includeStopStrInOutput, Boolean echo, JsonNode tools, JsonNode toolChoice,
                    JsonNode responseFormat, Boolean addGenerationPrompt, Map<String, Object> chatTemplateKwargs,
                    Integer promptLogprobs, Boolean addSpecialTokens) implements SamplingFields {
    }

    /**
     * One chat message. {@code content} is a string, text parts, or null (an assistant turn that only
     * called tools); {@code tool_calls} and {@code tool_call_id} come with tool use in a history and are
     * passed to the chat template as they are.
     */
    record Message(String role, JsonNode content, String name, List<Map<String, Object>> toolCalls,
                   String toolCallId) {
    }

    record StreamOptions(Boolean includeUsage, Boolean continuousUsageStats) {
    }

    /** vLLM's {@code POST /tokenize}: a {@code prompt}, or chat {@code messages} rendered by the chat template. */
    record TokenizeBody(String model, String prompt, List<Message> messages, Boolean addSpecialTokens,
                        Boolean addGenerationPrompt, Boolean returnTokenStrs, Map<String, Object> chatTemplateKwargs) {
    }

    /** vLLM's {@code POST /detokenize}. */
    record DetokenizeBody(String model, List<Integer> tokens) {
    }

    /** {@code POST /v1/load_lora_adapter} (vLLM). */
    record LoadLora(String loraName, String loraPath, Boolean loadInplace) {
    }

    /** {@code POST /v1/unload_lora_adapter} (vLLM). */
    record UnloadLora(String loraName, Integer loraIntId) {
    }

    /**
     * {@code POST /v1/engine/continue} (a router's fail-over): the original {@code request} body as the client
     * sent it to {@code endpoint} ("completions" or "chat"), the response's {@code id} and {@code created}, and
     * the tokens the client has received; {@code preempted}: this engine preempted the request and handed it to
     * the router, which found no other engine for it, so it queues at the head.
     */
    record ContinueBody(String endpoint, String id, Long created, JsonNode request, List<Integer> generatedTokenIds,
                        Boolean preempted) {
    }

    /** The sampling fields both generation endpoints share. */
    sealed interface SamplingFields permits CompletionBody, ChatBody {
        Integer n();

        Boolean stream();

        StreamOptions streamOptions();

        JsonNode stop();

        Float temperature();

        Float topP();

        Integer topK();

        Float minP();

        Long seed();

        Float presencePenalty();

        Float frequencyPenalty();

        Float repetitionPenalty();

        Boolean ignoreEos();

        List<Integer> stopTokenIds();

        Map<String, Float> logitBias();

        Integer minTokens();

        Boolean skipSpecialTokens();

        Boolean includeStopStrInOutput();

        Boolean echo();

        Integer promptLogprobs();
    }
}
