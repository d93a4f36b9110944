package ai.punica.engine;

import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.ScalarSampler;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Turns a request's sampling parameters and history into a {@link SamplingRow}, its penalty tokens and
 * logit biases, and picks tokens on the host with {@link ScalarSampler} when the backend does not sample
 * itself (vLLM's order: logit biases and min_tokens → penalties → greedy or temperature → top-k → top-p →
 * min-p → draw; log-probabilities from the raw logits). One instance per engine thread; per-request state lives in {@link State}.
 */
final class Sampler {

    /** What a request's sampling remembers between steps. */
    static final class State {
        private final long seed;
        private final SplittableRandom random;
        private final BitSet promptTokens = new BitSet();
        private final Map<Integer, Integer> outputCounts = new HashMap<>();
        /** Token ids banned while fewer than min_tokens were generated: stop ids, and EOS unless ignore_eos. */
        private final int[] stopIds;
        /** Values drawn from {@link #random}: its position, carried by a {@link Continuation}. */
        private long draws;
        private int generated;

        State(SamplingParams params, int[] prompt, long fallbackSeed) {
            this(params, prompt, fallbackSeed, new int[0]);
        }

        /** @param eosTokenIds the model's end-of-sequence tokens (banned before min_tokens unless ignore_eos) */
        State(SamplingParams params, int[] prompt, long fallbackSeed, int[] eosTokenIds) {
            this.seed = params.seed() != null ? params.seed() : fallbackSeed;
            this.random = new SplittableRandom(seed);
            for (int t : prompt) {
                promptTokens.set(t);
            }
            java.util.TreeSet<Integer> stops = new TreeSet<>(params.stopTokenIds());
            if (!params.ignoreEos()) {
                for (int t : eosTokenIds) {
                    stops.add(t);
                }
            }
            this.stopIds = params.minTokens() > 0 ? stops.stream().mapToInt(Integer::intValue).toArray() : new int[0];
        }

        /**
         * The state a request had after generating {@code generated} with {@code draws} values drawn: penalty
         * counts rebuilt from the tokens, the generator moved to the same position.
         */
        static State resumed(SamplingParams params, int[] prompt, long seed, int[] generated, long draws,
                             int[] eosTokenIds) {
            State s = new State(params.toBuilder().seed(seed).build(), prompt, seed, eosTokenIds);
            for (int t : generated) {
                s.accept(t);
            }
            for (long i = 0; i < draws; i++) {
                s.random.nextDouble();
            }
            s.draws = draws;
            return s;
        }

        long seed() {
            return seed;
        }

        long draws() {
            return draws;
        }

        void accept(int token) {
            outputCounts.merge(token, 1, Integer::sum);
            generated++;
        }

        /**
         * Appends the row of this request's next token to {@code batch}: its parameters with one uniform
         * draw from the request's generator (none for a greedy row), then its penalty tokens: prompt and
         * generated ones when a repetition penalty is set, else the generated ones when a presence or
         * frequency penalty is, else none; then its logit biases: {@code logit_bias}, and {@code -∞} on the stop
         * ids while fewer than {@code min_tokens} tokens were generated (vLLM's MinTokensLogitsProcessor).
         */
        void addRow(SamplingParams p, SamplingBatch.Builder batch) {
            double uniform = 0;
            if (!p.isGreedy()) {
                uniform = random.nextDouble();
                draws++;
            }
            batch.row(new SamplingRow(p.temperature(), p.topK(), p.topP(), p.minP(), p.repetitionPenalty(),
                    p.presencePenalty(), p.frequencyPenalty(), uniform, p.logprobs()));
            if (p.repetitionPenalty() != 1f) {
                for (int t = promptTokens.nextSetBit(0); t >= 0; t = promptTokens.nextSetBit(t + 1)) {
                    batch.penalty(t, outputCounts.getOrDefault(t, 0));
                }
                for (Map.Entry<Integer, Integer> e : outputCounts.entrySet()) {
                    if (!promptTokens.get(e.getKey())) {
                        batch.penalty(e.getKey(), e.getValue());
                    }
                }
            } else if (p.presencePenalty() != 0f || p.frequencyPenalty() != 0f) {
                for (Map.Entry<Integer, Integer> e : outputCounts.entrySet()) {
                    batch.penalty(e.getKey(), e.getValue());
                }
            }
            boolean banStops = generated < p.minTokens() && stopIds.length > 0;
            if (!banStops) {
                for (Map.Entry<Integer, Float> e : p.logitBias().entrySet()) {
                    batch.bias(e.getKey(), e.getValue());
                }
                return;
            }
            Map<Integer, Float> biases = new TreeMap<>(p.logitBias());
            for (int t : stopIds) {
                biases.put(t, Float.NEGATIVE_INFINITY);
            }
            for (Map.Entry<Integer, Float> e : biases.entrySet()) {
                batch.bias(e.getKey(), e.getValue());
            }
        }
    }

    private final ScalarSampler scalar = new ScalarSampler();

    /** Chooses the next token from {@code logits[offset, offset + vocab)}; does not modify them. */
    int sample(float[] logits, int offset, int vocab, SamplingParams params, State state) {
        SamplingBatch.Builder batch = SamplingBatch.builder();
        state.addRow(params, batch);
        return scalar.pick(logits, offset, vocab, batch.build(), 0);
    }

    /** Index of the largest value, the lowest index on ties (as torch.argmax). */
    static int argmax(float[] l, int offset, int vocab) {
        return ScalarSampler.argmax(l, offset, vocab);
    }

    /** log softmax(logits)[token], and the {@code top} most likely tokens, from the raw logits. */
    static TokenLogprob logprobs(float[] logits, int offset, int vocab, int token, int top) {
        return toTokenLogprob(ScalarSampler.logprobs(logits, offset, vocab, token, top));
    }

    /**
     * A prompt token's prompt_logprobs entry from the logits of the position before it: log softmax of the
     * raw logits at {@code token}, its rank (how many tokens score at least as high, itself included, as
     * vLLM counts), and the {@code top} most likely tokens.
     */
    static PromptLogprob promptLogprob(float[] logits, int offset, int vocab, int token, int top) {
        TokenLogprob lp = logprobs(logits, offset, vocab, token, top);
        float value = logits[offset + token];
        int rank = 0;
        for (int i = 0; i < vocab; i++) {
            if (logits[offset + i] >= value) {
                rank++;
            }
        }
        return new PromptLogprob(token, lp.logprob(), rank, lp.top());
    }

    /** The engine's form of a sampled token's log-probabilities (for a row that asked for them). */
    static TokenLogprob toTokenLogprob(SampledToken sampled) {
        List<TokenLogprob.Alternative> top = new ArrayList<>(sampled.topTokens().length);
        for (int i = 0; i < sampled.topTokens().length; i++) {
            top.add(new TokenLogprob.Alternative(sampled.topTokens()[i], sampled.topLogprobs()[i]));
        }
        return new TokenLogprob(sampled.token(), sampled.logprob(), List.copyOf(top));
    }
}
