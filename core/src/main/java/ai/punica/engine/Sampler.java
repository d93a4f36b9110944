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

/**
 * Turns a request's sampling parameters and history into a {@link SamplingRow} and its penalty tokens,
 * and picks tokens on the host with {@link ScalarSampler} when the backend does not sample itself
 * (vLLM's order: penalties → greedy or temperature → top-k → top-p → min-p → draw; log-probabilities
 * from the raw logits). One instance per engine thread; per-request state lives in {@link State}.
 */
final class Sampler {

    /** What a request's sampling remembers between steps. */
    static final class State {
        private final long seed;
        private final SplittableRandom random;
        private final BitSet promptTokens = new BitSet();
        private final Map<Integer, Integer> outputCounts = new HashMap<>();
        /** Values drawn from {@link #random}: its position, carried by a {@link Continuation}. */
        private long draws;

        State(SamplingParams params, int[] prompt, long fallbackSeed) {
            this.seed = params.seed() != null ? params.seed() : fallbackSeed;
            this.random = new SplittableRandom(seed);
            for (int t : prompt) {
                promptTokens.set(t);
            }
        }

        /**
         * The state a request had after generating {@code generated} with {@code draws} values drawn: penalty
         * counts rebuilt from the tokens, the generator moved to the same position.
         */
        static State resumed(SamplingParams params, int[] prompt, long seed, int[] generated, long draws) {
            State s = new State(params.toBuilder().seed(seed).build(), prompt, seed);
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
        }

        /**
         * Appends the row of this request's next token to {@code batch}: its parameters with one uniform
         * draw from the request's generator (none for a greedy row), then its penalty tokens: prompt and
         * generated ones when a repetition penalty is set, else the generated ones when a presence or
         * frequency penalty is, else none.
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

    /** The engine's form of a sampled token's log-probabilities (for a row that asked for them). */
    static TokenLogprob toTokenLogprob(SampledToken sampled) {
        List<TokenLogprob.Alternative> top = new ArrayList<>(sampled.topTokens().length);
        for (int i = 0; i < sampled.topTokens().length; i++) {
            top.add(new TokenLogprob.Alternative(sampled.topTokens()[i], sampled.topLogprobs()[i]));
        }
        return new TokenLogprob(sampled.token(), sampled.logprob(), List.copyOf(top));
    }
}
