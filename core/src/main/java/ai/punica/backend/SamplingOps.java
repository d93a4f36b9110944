package ai.punica.backend;

import java.util.List;

/**
 * Sampling next to the logits, where a backend can ({@link #supportsSampling}); otherwise the engine
 * downloads the logits and samples on the host with {@link ScalarSampler}.
 */
public interface SamplingOps {

    /** "cpu", "reference", "cuda": names the backend in messages. */
    String name();

    /**
     * Whether {@link #sample} runs here, next to the logits; when not, the engine downloads the logits
     * and samples on the host.
     */
    default boolean supportsSampling() {
        return false;
    }

    /**
     * One token per row of {@code logits} {@code [rows, vocab]}, as {@link ScalarSampler} defines it
     * for row r of {@code batch}: only the tokens and the log-probabilities asked for come back to the
     * host. {@code logits} is not modified.
     *
     * @throws UnsupportedOperationException where {@link #supportsSampling} is false
     */
    default List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        throw new UnsupportedOperationException("the " + name() + " backend does not sample; download the logits");
    }
}
