package ai.punica.engine;

import ai.punica.backend.SamplingRow;
import java.util.List;

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
 */
public record SamplingParams(float temperature, float topP, int topK, float minP, float repetitionPenalty,
                             float presencePenalty, float frequencyPenalty, Long seed, int maxTokens,
                             List<String> stop, List<Integer> stopTokenIds, boolean ignoreEos, int logprobs,
                             boolean skipSpecialTokens, boolean includeStopStrInOutput) {

    public static final int MAX_LOGPROBS = SamplingRow.MAX_LOGPROBS;

    public SamplingParams {
        stop = stop == null ? List.of() : List.copyOf(stop);
        stopTokenIds = stopTokenIds == null ? List.of() : List.copyOf(stopTokenIds);
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

        public SamplingParams build() {
            return new SamplingParams(temperature, topP, topK, minP, repetitionPenalty, presencePenalty,
                    frequencyPenalty, seed, maxTokens, stop, stopTokenIds, ignoreEos, logprobs, skipSpecialTokens,
                    includeStopStrInOutput);
        }
    }
}
