package ai.punica.engine;

import java.util.List;

/**
 * vLLM's {@code prompt_logprobs} entry of one prompt token (all but the first): its log-probability under
 * the raw logits of the position before it, its rank there (1 + how many other tokens have a log-probability
 * at least as high), and the {@code top} most likely tokens at that position (ranks 1, 2, …).
 */
public record PromptLogprob(int token, float logprob, int rank, List<TokenLogprob.Alternative> top) {
}
