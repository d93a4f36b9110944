package ai.punica.engine;

import java.util.List;

/**
 * Log-probability of a generated token under the model (raw logits, before temperature and
 * penalties, as vLLM reports them by default), with the {@code top} most likely alternatives.
 */
public record TokenLogprob(int token, float logprob, List<Alternative> top) {
    public record Alternative(int token, float logprob) {
    }
}
