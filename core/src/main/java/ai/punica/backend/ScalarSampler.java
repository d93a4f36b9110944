package ai.punica.backend;

import java.util.Arrays;

/**
 * Sampling in plain scalar code: the definition of {@link Backend#sample}, used by the engine when it
 * samples on the host and by the reference backend. vLLM's order: logit biases → penalties → greedy argmax, or
 * temperature softmax → top-k → top-p → min-p → one draw by inverse CDF in index order.
 * Log-probabilities come from the raw logits. Not thread-safe (it keeps work buffers).
 */
public final class ScalarSampler {
    private float[] work = new float[0];
    private float[] sorted = new float[0];

    /** Row {@code r} of {@code batch} on {@code logits[offset, offset + vocab)}: the token, and logprobs if asked. */
    public SampledToken sample(float[] logits, int offset, int vocab, SamplingBatch batch, int r) {
        int token = pick(logits, offset, vocab, batch, r);
        int top = batch.row(r).logprobs();
        return top < 0 ? SampledToken.of(token) : logprobs(logits, offset, vocab, token, top);
    }

    /** The token row {@code r} of {@code batch} picks from {@code logits[offset, offset + vocab)} (not modified). */
    public int pick(float[] logits, int offset, int vocab, SamplingBatch batch, int r) {
        SamplingRow row = batch.row(r);
        float[] l = penalized(logits, offset, vocab, batch, r);
        if (row.isGreedy()) {
            return argmax(l, 0, vocab);
        }
        keep(l, vocab, row);
        double u = row.uniform() * sum(l, vocab);
        int last = -1;
        for (int i = 0; i < vocab; i++) {
            if (l[i] > 0f) {
                last = i;
                u -= l[i];
                if (u < 0) {
                    return i;
                }
            }
        }
        return last >= 0 ? last : argmax(logits, offset, vocab);
    }

    /**
     * The probabilities the draw of a non-greedy row chooses from, in index order: softmax of the
     * penalised logits over the temperature, zero where top-k, top-p or min-p dropped the token. In a
     * buffer the next call reuses; for tests that look at where the draw fell.
     */
    public float[] keptProbabilities(float[] logits, int offset, int vocab, SamplingBatch batch, int r) {
        float[] l = penalized(logits, offset, vocab, batch, r);
        keep(l, vocab, batch.row(r));
        return l;
    }

    /** A copy of the row's logits in {@link #work}, with its logit biases, then its penalties applied. */
    private float[] penalized(float[] logits, int offset, int vocab, SamplingBatch batch, int r) {
        if (work.length < vocab) {
            work = new float[vocab];
            sorted = new float[vocab];
        }
        float[] l = work;
        System.arraycopy(logits, offset, l, 0, vocab);
        applyBiases(l, batch, r);
        applyPenalties(l, batch, r);
        return l;
    }

    /** {@code l[t] += bias} for the row's biased tokens (vLLM applies logit_bias and min_tokens before penalties). */
    private static void applyBiases(float[] l, SamplingBatch batch, int r) {
        for (int i = batch.biasStarts()[r]; i < batch.biasStarts()[r + 1]; i++) {
            l[batch.biasTokens()[i]] += batch.biasValues()[i];
        }
    }

    /**
     * Repetition penalty (HF/CTRL: divide positive logits, multiply negative ones) over every listed
     * token; presence and frequency penalties (OpenAI: {@code l -= presence·[c>0] + frequency·c}) over
     * the generated ones.
     */
    private static void applyPenalties(float[] l, SamplingBatch batch, int r) {
        SamplingRow p = batch.row(r);
        float repetition = p.repetitionPenalty();
        boolean additive = p.presencePenalty() != 0f || p.frequencyPenalty() != 0f;
        for (int i = batch.penaltyStarts()[r]; i < batch.penaltyStarts()[r + 1]; i++) {
            int t = batch.penaltyTokens()[i];
            int count = batch.penaltyCounts()[i];
            if (repetition != 1f) {
                l[t] = l[t] > 0 ? l[t] / repetition : l[t] * repetition;
            }
            if (additive && count > 0) {
                l[t] -= p.presencePenalty() + p.frequencyPenalty() * count;
            }
        }
    }

    /** Turns penalised logits into softmax(l / T), in place, and zeroes what the filters drop. */
    private void keep(float[] l, int vocab, SamplingRow row) {
        float inverseTemperature = 1f / row.temperature();
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            l[i] *= inverseTemperature;
            max = Math.max(max, l[i]);
        }
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            float e = (float) Math.exp(l[i] - max);
            l[i] = e;
            sum += e;
        }
        for (int i = 0; i < vocab; i++) {
            l[i] = (float) (l[i] / sum);
        }
        int topK = row.topK() <= 0 ? vocab : Math.min(row.topK(), vocab);
        float threshold = 0f;
        if (topK < vocab || row.topP() < 1f) {
            System.arraycopy(l, 0, sorted, 0, vocab);
            Arrays.sort(sorted, 0, vocab); // ascending
            if (topK < vocab) {
                threshold = sorted[vocab - topK];
            }
            if (row.topP() < 1f) {
                // Smallest set of most likely tokens whose mass reaches top_p (always at least one).
                // After top-k the kept mass is renormalised, so top_p applies to that mass.
                double keptMass = 0;
                for (int i = vocab - 1; i >= vocab - topK; i--) {
                    keptMass += sorted[i];
                }
                double mass = 0;
                for (int i = vocab - 1; i >= vocab - topK; i--) {
                    mass += sorted[i];
                    if (mass >= row.topP() * keptMass) {
                        threshold = Math.max(threshold, sorted[i]);
                        break;
                    }
                }
            }
        }
        if (row.minP() > 0f) {
            float pmax = 0f;
            for (int i = 0; i < vocab; i++) {
                pmax = Math.max(pmax, l[i]);
            }
            threshold = Math.max(threshold, row.minP() * pmax);
        }
        for (int i = 0; i < vocab; i++) {
            if (l[i] < threshold) {
                l[i] = 0f;
            }
        }
    }

    private static double sum(float[] l, int vocab) {
        double kept = 0;
        for (int i = 0; i < vocab; i++) {
            kept += l[i];
        }
        return kept;
    }

    /** Index of the largest value, the lowest index on ties (as torch.argmax). */
    public static int argmax(float[] l, int offset, int vocab) {
        int best = 0;
        float bestValue = l[offset];
        for (int i = 1; i < vocab; i++) {
            if (l[offset + i] > bestValue) {
                bestValue = l[offset + i];
                best = i;
            }
        }
        return best;
    }

    /**
     * log softmax(logits)[token], and the {@code top} most likely tokens (the lowest index first among
     * equal logits), from the raw logits.
     */
    public static SampledToken logprobs(float[] logits, int offset, int vocab, int token, int top) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            max = Math.max(max, logits[offset + i]);
        }
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            sum += Math.exp(logits[offset + i] - max);
        }
        float logZ = (float) (max + Math.log(sum));
        int[] best = new int[Math.max(0, top)];
        int count = 0;
        for (int i = 0; i < vocab && top > 0; i++) {
            float v = logits[offset + i];
            if (count < top || v > logits[offset + best[count - 1]]) {
                int pos = Math.min(count, top - 1);
                while (pos > 0 && logits[offset + best[pos - 1]] < v) {
                    best[pos] = best[pos - 1];
                    pos--;
                }
                best[pos] = i;
                count = Math.min(count + 1, top);
            }
        }
        int[] topTokens = Arrays.copyOf(best, count);
        float[] topLogprobs = new float[count];
        for (int i = 0; i < count; i++) {
            topLogprobs[i] = logits[offset + best[i]] - logZ;
        }
        return new SampledToken(token, logits[offset + token] - logZ, topTokens, topLogprobs);
    }
}
