package ai.punica.engine;

import ai.punica.backend.SamplingRow;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * How one request picks its tokens and when it stops (the OpenAI/vLLM sampling parameters).
 *
 * @param temperature       0 means greedy
 * @param topP              nucleus mass in (0, 1]
 * @param topK              keep the k most likely tokens; 0 or -1 means all
 * @param minP              drop tokens below minP · p(most likely); 0 disables
 * @param repetitionPenalty HF/CTRL penalty over prompt and output tokens, 1 disables
 * @param presencePenalty   OpenAI: subtracted once from every token already generated
 * @param frequencyPenalty  OpenAI: subtracted per occurrence in the generated tokens
 * @param seed              same seed, same prompt, same output; null draws one
 * @param maxTokens         most tokens to generate
 * @param stop              stop strings (not included in the output)
 * @param stopTokenIds      extra token ids that end generation
 * @param ignoreEos         keep going past end-of-sequence tokens
 * @param logprobs          -1: none; 0: the chosen token's; n: also the n most likely
 * @param skipSpecialTokens leave special tokens ({@code </s>}) out of the text (vLLM's default)
 * @param includeStopStrInOutput keep the stop string that ended the text in it (vLLM's option)
 * @param logitBias         OpenAI: token id → bias in [-100, 100] added to its logit before penalties and
 *                          sampling (log-probabilities stay those of the raw logits, as vLLM's default)
 * @param minTokens         vLLM: end-of-sequence and stop token ids are banned, and stop strings not
 *                          looked for, until this many tokens were generated
 * @param promptLogprobs    vLLM: -1: none; k ≥ 0: per prompt token (but the first) its log-probability
 *                          and the k most likely tokens at that position
 */
public record SamplingParams(float temperature, float topP, int topK, float minP, float repetitionPenalty,
                             float presencePenalty, float frequencyPenalty, Long seed, int maxTokens,
                             List<String> stop, List<Integer> stopTokenIds, boolean ignoreEos, int logprobs,
                             boolean skipSpecialTokens, boolean includeStopStrInOutput,
                             Map<Integer, Float> logitBias, int minTokens, int promptLogprobs) {

    public static final int MAX_LOGPROBS = SamplingRow.MAX_LOGPROBS;
    /** Most {@code logit_bias} entries one request may send (OpenAI's limit). */
    public static final int MAX_LOGIT_BIAS = 300;
    /** The largest {@code logit_bias} magnitude (OpenAI's range). */
    public static final float MAX_BIAS = 100f;

    public SamplingParams {
        stop = stop == null ? List.of() : List.copyOf(stop);
        stopTokenIds = stopTokenIds == null ? List.of() : List.copyOf(stopTokenIds);
        logitBias = logitBias == null || logitBias.isEmpty() ? Map.of()
                : Collections.unmodifiableMap(new TreeMap<>(logitBias));
    }

    public static SamplingParams greedy(int maxTokens) {
        return builder().temperature(0).maxTokens(maxTokens).build();
    }

    public boolean isGreedy() {
        return temperature == 0f;
    }

    /**
     * Checks every value; the message names the parameter, the value and the allowed range, as the
     * server reports it to the client.
     */
    public void validate() {
        check(Float.isFinite(temperature) && temperature >= 0 && temperature <= 100, "temperature", temperature,
                "must be between 0 and 100 (0 is greedy)");
        check(Float.isFinite(topP) && topP > 0 && topP <= 1, "top_p", topP, "must be in (0, 1]");
        check(topK == -1 || topK >= 0, "top_k", topK, "must be -1, 0 (both mean all tokens) or positive");
        check(Float.isFinite(minP) && minP >= 0 && minP <= 1, "min_p", minP, "must be in [0, 1]");
        check(Float.isFinite(repetitionPenalty) && repetitionPenalty > 0 && repetitionPenalty <= 10,
                "repetition_penalty", repetitionPenalty, "must be in (0, 10]");
        check(Float.isFinite(presencePenalty) && presencePenalty >= -2 && presencePenalty <= 2, "presence_penalty",
                presencePenalty, "must be in [-2, 2]");
        check(Float.isFinite(frequencyPenalty) && frequencyPenalty >= -2 && frequencyPenalty <= 2,
                "frequency_penalty", frequencyPenalty, "must be in [-2, 2]");
        check(maxTokens >= 1, "max_tokens", maxTokens, "must be at least 1");
        check(logprobs >= -1 && logprobs <= MAX_LOGPROBS, "logprobs", logprobs,
                "must be between 0 and " + MAX_LOGPROBS);
        for (String s : stop) {
            check(s != null && !s.isEmpty(), "stop", s, "stop strings must not be empty");
        }
        check(minTokens >= 0 && minTokens <= maxTokens, "min_tokens", minTokens,
                "must be between 0 and max_tokens (" + maxTokens + ")");
        check(promptLogprobs >= -1 && promptLogprobs <= MAX_LOGPROBS, "prompt_logprobs", promptLogprobs,
                "must be between 0 and " + MAX_LOGPROBS);
        check(logitBias.size() <= MAX_LOGIT_BIAS, "logit_bias", logitBias.size() + " entries",
                "at most " + MAX_LOGIT_BIAS + " tokens may be biased");
        for (Map.Entry<Integer, Float> e : logitBias.entrySet()) {
            float b = e.getValue() == null ? Float.NaN : e.getValue();
            check(e.getKey() >= 0, "logit_bias", "token " + e.getKey(), "token ids must not be negative");
            check(Float.isFinite(b) && Math.abs(b) <= MAX_BIAS, "logit_bias", "bias " + e.getValue() + " of token "
                    + e.getKey(), "must be between -" + (int) MAX_BIAS + " and " + (int) MAX_BIAS);
        }
    }

    /**
     * Checks the token ids this request names against a vocabulary of {@code vocab} tokens (the engine
     * knows it, {@link #validate} does not).
     */
    public void validateTokens(int vocab) {
        for (int t : logitBias.keySet()) {
            check(t < vocab, "logit_bias", "token " + t, "is outside the vocabulary [0, " + vocab + ")");
        }
    }

    private static void check(boolean ok, String name, Object value, String rule) {
        if (!ok) {
            throw new InvalidRequestException(name, "invalid " + name + " " + value + ": " + rule);
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.temperature = temperature;
        b.topP = topP;
        b.topK = topK;
        b.minP = minP;
        b.repetitionPenalty = repetitionPenalty;
        b.presencePenalty = presencePenalty;
        b.frequencyPenalty = frequencyPenalty;
        b.seed = seed;
        b.maxTokens = maxTokens;
        b.stop = stop;
        b.stopTokenIds = stopTokenIds;
        b.ignoreEos = ignoreEos;
        b.logprobs = logprobs;
        b.skipSpecialTokens = skipSpecialTokens;
        b.includeStopStrInOutput = includeStopStrInOutput;
        b.logitBias = logitBias;
        b.minTokens = minTokens;
        b.promptLogprobs = promptLogprobs;
        return b;
    }

    /** Defaults as OpenAI's API has them: temperature 1, top_p 1, 16 tokens. */
    public static final class Builder {
        private float temperature = 1f;
        private float topP = 1f;
        private int topK = 0;
        private float minP = 0f;
        private float repetitionPenalty = 1f;
        private float presencePenalty = 0f;
        private float frequencyPenalty = 0f;
        private Long seed;
        private int maxTokens = 16;
        private List<String> stop = List.of();
        private List<Integer> stopTokenIds = List.of();
        private boolean ignoreEos;
        private int logprobs = -1;
        private boolean skipSpecialTokens = true;
        private boolean includeStopStrInOutput;
        private Map<Integer, Float> logitBias = Map.of();
        private int minTokens;
        private int promptLogprobs = -1;

        public Builder temperature(float v) {
            temperature = v;
            return this;
        }

        public Builder topP(float v) {
            topP = v;
            return this;
        }

        public Builder topK(int v) {
            topK = v;
            return this;
        }

        public Builder minP(float v) {
            minP = v;
            return this;
        }

        public Builder repetitionPenalty(float v) {
            repetitionPenalty = v;
            return this;
        }

        public Builder presencePenalty(float v) {
            presencePenalty = v;
            return this;
        }

        public Builder frequencyPenalty(float v) {
            frequencyPenalty = v;
            return this;
        }

        public Builder seed(Long v) {
            seed = v;
            return this;
        }

        public Builder maxTokens(int v) {
            maxTokens = v;
            return this;
        }

        public Builder stop(List<String> v) {
            stop = v;
            return this;
        }

        public Builder stopTokenIds(List<Integer> v) {
            stopTokenIds = v;
            return this;
        }

        public Builder ignoreEos(boolean v) {
            ignoreEos = v;
            return this;
        }

        public Builder logprobs(int v) {
            logprobs = v;
            return this;
        }

        public Builder skipSpecialTokens(boolean v) {
            skipSpecialTokens = v;
            return this;
        }

        public Builder includeStopStrInOutput(boolean v) {
            includeStopStrInOutput = v;
            return this;
        }

        public Builder logitBias(Map<Integer, Float> v) {
            logitBias = v;
            return this;
        }

        public Builder minTokens(int v) {
            minTokens = v;
            return this;
        }

        public Builder promptLogprobs(int v) {
            promptLogprobs = v;
            return this;
        }

        public SamplingParams build() {
            return new SamplingParams(temperature, topP, topK, minP, repetitionPenalty, presencePenalty,
                    frequencyPenalty, seed, maxTokens, stop, stopTokenIds, ignoreEos, logprobs, skipSpecialTokens,
                    includeStopStrInOutput, logitBias, minTokens, promptLogprobs);
        }
    }
}
