package ai.punica.engine;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Picks next tokens from logits on the host, in vLLM's order: penalties → greedy or (temperature →
 * top-k → top-p → min-p → draw). Log-probabilities are reported from the raw logits. One instance per
 * engine thread; per-request state lives in {@link State}.
 */
final class Sampler {

    /** What a request's sampling remembers between steps. */
    static final class State {
        private final SplittableRandom random;
        private final BitSet promptTokens = new BitSet();
        private final Map<Integer, Integer> outputCounts = new HashMap<>();

        State(SamplingParams params, int[] prompt, long fallbackSeed) {
            this.random = new SplittableRandom(params.seed() != null ? params.seed() : fallbackSeed);
            for (int t : prompt) {
                promptTokens.set(t);
            }
        }

        void accept(int token) {
            outputCounts.merge(token, 1, Integer::sum);
        }
    }

    private float[] work = new float[0];
    private float[] sorted = new float[0];

    /** Chooses the next token from {@code logits[offset, offset + vocab)}; does not modify them. */
    int sample(float[] logits, int offset, int vocab, SamplingParams params, State state) {
        if (work.length < vocab) {
            work = new float[vocab];
            sorted = new float[vocab];
        }
        float[] l = work;
        System.arraycopy(logits, offset, l, 0, vocab);
        applyPenalties(l, vocab, params, state);
        if (params.isGreedy()) {
            return argmax(l, vocab);
        }
        // p = softmax(l / T), in place
        float inverseTemperature = 1f / params.temperature();
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
        // Each filter zeroes what it drops; draw from what is left.
        int topK = params.topK() <= 0 ? vocab : Math.min(params.topK(), vocab);
        float threshold = 0f;
        if (topK < vocab || params.topP() < 1f) {
            System.arraycopy(l, 0, sorted, 0, vocab);
            Arrays.sort(sorted, 0, vocab); // ascending
            if (topK < vocab) {
                threshold = sorted[vocab - topK];
            }
            if (params.topP() < 1f) {
                // Smallest set of most likely tokens whose mass reaches top_p (always at least one).
                // After top-k the kept mass is renormalised, so top_p applies to that mass.
                double keptMass = 0;
                for (int i = vocab - 1; i >= vocab - topK; i--) {
                    keptMass += sorted[i];
                }
                double mass = 0;
                for (int i = vocab - 1; i >= vocab - topK; i--) {
                    mass += sorted[i];
                    if (mass >= params.topP() * keptMass) {
                        threshold = Math.max(threshold, sorted[i]);
                        break;
                    }
                }
            }
        }
        if (params.minP() > 0f) {
            float pmax = 0f;
            for (int i = 0; i < vocab; i++) {
                pmax = Math.max(pmax, l[i]);
            }
            threshold = Math.max(threshold, params.minP() * pmax);
        }
        double kept = 0;
        for (int i = 0; i < vocab; i++) {
            if (l[i] < threshold) {
                l[i] = 0f;
            }
            kept += l[i];
        }
        double u = state.random.nextDouble() * kept;
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
     * Repetition penalty (HF/CTRL: divide positive logits, multiply negative ones, for tokens seen in
     * prompt or output); presence and frequency penalties (OpenAI: {@code l -= presence·[c>0] + frequency·c}
     * over generated tokens).
     */
    private static void applyPenalties(float[] l, int vocab, SamplingParams p, State state) {
        if (p.repetitionPenalty() != 1f) {
            float r = p.repetitionPenalty();
            for (int t = state.promptTokens.nextSetBit(0); t >= 0 && t < vocab; t = state.promptTokens.nextSetBit(t + 1)) {
                l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
            }
            for (int t : state.outputCounts.keySet()) {
                if (t < vocab && !state.promptTokens.get(t)) {
                    l[t] = l[t] > 0 ? l[t] / r : l[t] * r;
                }
            }
        }
        if (p.presencePenalty() != 0f || p.frequencyPenalty() != 0f) {
            for (Map.Entry<Integer, Integer> e : state.outputCounts.entrySet()) {
                int t = e.getKey();
                if (t < vocab) {
                    l[t] -= p.presencePenalty() + p.frequencyPenalty() * e.getValue();
                }
            }
        }
    }

    private static int argmax(float[] l, int vocab) {
        return argmax(l, 0, vocab);
    }

    /** Index of the largest value, the lowest index on ties (as torch.argmax). */
    static int argmax(float[] l, int offset, int vocab) {
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

    /** log softmax(logits)[token], and the {@code top} most likely tokens, from the raw logits. */
    static TokenLogprob logprobs(float[] logits, int offset, int vocab, int token, int top) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            max = Math.max(max, logits[offset + i]);
        }
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            sum += Math.exp(logits[offset + i] - max);
        }
        float logZ = (float) (max + Math.log(sum));
        List<TokenLogprob.Alternative> alternatives = new ArrayList<>(top);
        if (top > 0) {
            int[] best = new int[top];
            int count = 0;
            for (int i = 0; i < vocab; i++) {
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
            for (int i = 0; i < count; i++) {
                alternatives.add(new TokenLogprob.Alternative(best[i], logits[offset + best[i]] - logZ));
            }
        }
        return new TokenLogprob(token, logits[offset + token] - logZ, List.copyOf(alternatives));
    }
}
