package ai.punica.engine;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The end of a generation.
 *
 * @param text           the whole generated text (stop string excluded)
 * @param stopReason     the stop string or token id that ended it, or null
 * @param arrivalNanos   {@link System#nanoTime()} when the engine accepted the request
 * @param firstTokenNanos when the first token was produced (0 if none)
 * @param finishNanos    when it finished
 * @param preemptions    how often the request was preempted and recomputed
 * @param promptLogprobs one entry per prompt token, the first null (vLLM's {@code prompt_logprobs}); null
 *                       when the request did not ask for them
 */
public record Completion(String requestId, String adapter, FinishReason finishReason, Object stopReason,
                         String text, int[] tokens, List<TokenLogprob> logprobs, int promptTokens,
                         long arrivalNanos, long firstTokenNanos, long finishNanos, int preemptions,
                         List<PromptLogprob> promptLogprobs) {

    public Completion {
        promptLogprobs = promptLogprobs == null ? null : Collections.unmodifiableList(new ArrayList<>(promptLogprobs));
    }

    /** A completion without prompt log-probabilities. */
    public Completion(String requestId, String adapter, FinishReason finishReason, Object stopReason, String text,
                      int[] tokens, List<TokenLogprob> logprobs, int promptTokens, long arrivalNanos,
                      long firstTokenNanos, long finishNanos, int preemptions) {
        this(requestId, adapter, finishReason, stopReason, text, tokens, logprobs, promptTokens, arrivalNanos,
                firstTokenNanos, finishNanos, preemptions, null);
    }

    public int completionTokens() {
        return tokens.length;
    }
}
