package ai.punica.backend;

import java.util.Arrays;

/**
 * What {@link Backend#sample} picked for one row. When the row asked for no log-probabilities,
 * {@code logprob} is NaN and the top lists are empty.
 *
 * @param logprob     log softmax(raw logits)[token]
 * @param topTokens   the n most likely tokens under the raw logits, most likely first (lowest index first
 *                    among equal logits)
 * @param topLogprobs their log-probabilities
 */
public record SampledToken(int token, float logprob, int[] topTokens, float[] topLogprobs) {

    public SampledToken {
        if (topTokens.length != topLogprobs.length) {
            throw new IllegalArgumentException(topTokens.length + " top tokens with " + topLogprobs.length + " logprobs");
        }
    }

    public static SampledToken of(int token) {
        return new SampledToken(token, Float.NaN, new int[0], new float[0]);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SampledToken t && token == t.token && Float.compare(logprob, t.logprob) == 0
                && Arrays.equals(topTokens, t.topTokens) && Arrays.equals(topLogprobs, t.topLogprobs);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * token + Float.hashCode(logprob)) + Arrays.hashCode(topTokens);
    }

    @Override
    public String toString() {
        return "SampledToken[" + token + ", logprob " + logprob + ", top " + Arrays.toString(topTokens) + " "
                + Arrays.toString(topLogprobs) + "]";
    }
}
