package ai.punica.server;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.util.List;
import java.util.Map;

/**
 * The response bodies of OpenAI's API, field for field (snake_case on the wire). Fields that OpenAI
 * sends as {@code null} are kept as null here ({@code "logprobs": null, "finish_reason": null} in
 * every chunk); fields it leaves out are annotated {@link JsonInclude.Include#NON_NULL}.
 */
final class OpenAiJson {
    static final ObjectMapper MAPPER = JsonMapper.builder()
            .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .build();

    private OpenAiJson() {
    }

    static byte[] bytes(Object value) {
        try {
            return MAPPER.writeValueAsBytes(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot serialize " + value.getClass().getSimpleName(), e);
        }
    }

    record ErrorBody(ErrorDetail error) {
    }

    record ErrorDetail(String message, String type, String param, String code) {
    }

    record Usage(int promptTokens, int completionTokens, int totalTokens) {
        static Usage of(int prompt, int completion) {
            return new Usage(prompt, completion, prompt + completion);
        }
    }

    // ---- /v1/completions ------------------------------------------------------------------------

    /** One object for both the whole response ({@code usage} set) and a stream chunk. */
    record TextCompletion(String id, String object, long created, String model, List<TextChoice> choices,
                          @JsonInclude(JsonInclude.Include.NON_NULL) Usage usage) {
    }

    /** {@code prompt_logprobs}: vLLM's extension, present only when asked for ({@link PromptLogprobEntry}). */
    record TextChoice(int index, String text, TextLogprobs logprobs, String finishReason,
                      @JsonInclude(JsonInclude.Include.NON_NULL) List<Map<String, PromptLogprobEntry>> promptLogprobs) {

        TextChoice(int index, String text, TextLogprobs logprobs, String finishReason) {
            this(index, text, logprobs, finishReason, null);
        }
    }

    /**
     * vLLM's {@code Logprob} in {@code prompt_logprobs}: per prompt token (the first is null) an object keyed by
     * token id, the prompt token's entry first, then the most likely tokens'.
     */
    record PromptLogprobEntry(float logprob, int rank, String decodedToken) {
    }

    /** Legacy completions log-probabilities: parallel arrays, one entry per generated token. */
    record TextLogprobs(List<String> tokens, List<Float> tokenLogprobs, List<Map<String, Float>> topLogprobs,
                        List<Integer> textOffset) {
    }

    // ---- /v1/chat/completions -------------------------------------------------------------------

    /** {@code prompt_logprobs}: vLLM's extension (on the response, not the choice), only when asked for. */
    record ChatCompletion(String id, String object, long created, String model, List<ChatChoice> choices,
                          Usage usage,
                          @JsonInclude(JsonInclude.Include.NON_NULL) List<Map<String, PromptLogprobEntry>> promptLogprobs) {
    }

    record ChatChoice(int index, ChatMessage message, ChatLogprobs logprobs, String finishReason) {
    }

    record ChatMessage(String role, String content) {
    }

    record ChatCompletionChunk(String id, String object, long created, String model, List<ChatChunkChoice> choices,
                               @JsonInclude(JsonInclude.Include.NON_NULL) Usage usage) {
    }

    record ChatChunkChoice(int index, ChatDelta delta, ChatLogprobs logprobs, String finishReason) {
    }

    /** A stream delta: {@code role} only in each choice's first chunk; empty ({@code {}}) in the last. */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    record ChatDelta(String role, String content) {
    }

    record ChatLogprobs(List<ChatTokenLogprob> content) {
    }

    record ChatTokenLogprob(String token, float logprob, int[] bytes, List<ChatTopLogprob> topLogprobs) {
    }

    record ChatTopLogprob(String token, float logprob, int[] bytes) {
    }

    // ---- vLLM's /tokenize, /detokenize, /version ----------------------------------------------------

    record TokenizeResult(int count, int maxModelLen, List<Integer> tokens, List<String> tokenStrs) {
    }

    record DetokenizeResult(String prompt) {
    }

    record Version(String version) {
    }

    // ---- /v1/models -----------------------------------------------------------------------------

    record ModelList(String object, List<ModelCard> data) {
    }

    /** vLLM's model card: adapters have {@code parent} = the base model's id, {@code root} = their directory. */
    record ModelCard(String id, String object, long created, String ownedBy, String root, String parent,
                     @JsonInclude(JsonInclude.Include.NON_NULL) Integer maxModelLen) {
    }
}
