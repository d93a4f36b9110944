package ai.punica.server;

import ai.punica.engine.FinishReason;
import ai.punica.engine.SamplingParams;
import java.util.List;

/**
 * A checked, tokenized /v1/completions or /v1/chat/completions request: what the engine is asked
 * to run. Choice {@code i} runs prompt {@code i / n} with {@code params.get(i / n)}, as OpenAI
 * numbers choices when several prompts are sent with {@code n > 1}.
 *
 * @param model        the {@code model} field as sent (echoed in responses)
 * @param adapter      the adapter to run, or null for the base model
 * @param params       sampling per prompt (max_tokens may differ: chat fills the context)
 * @param logprobs     -1 for none, else how many alternatives per token
 * @param echo         per prompt, the text put before each of its choices' output ({@code echo}); null for none
 * @param echoOnly     vLLM's {@code echo} with {@code max_tokens} 0: each choice is its prompt (with its logprobs
 *                     when asked) and nothing generated; the engine runs one token, which the response leaves out
 */
record GenerationJob(Endpoint endpoint, String model, String adapter, List<int[]> prompts,
                     List<SamplingParams> params, int n, boolean stream, boolean includeUsage, int logprobs,
                     List<String> echo, boolean echoOnly) {

    enum Endpoint {
        COMPLETIONS("cmpl-", "text_completion"),
        CHAT("chatcmpl-", "chat.completion");

        final String idPrefix;
        final String object;

        Endpoint(String idPrefix, String object) {
            this.idPrefix = idPrefix;
            this.object = object;
        }
    }

    GenerationJob {
        prompts = List.copyOf(prompts);
        params = List.copyOf(params);
        echo = echo == null ? null : List.copyOf(echo);
    }

    int choices() {
        return prompts.size() * n;
    }

    int[] promptOf(int choice) {
        return prompts.get(choice / n);
    }

    SamplingParams paramsOf(int choice) {
        SamplingParams p = params.get(choice / n);
        // The same seed for every choice would give n identical answers: the k-th choice of a prompt
        // uses seed + k, so a seeded request is still reproducible as a whole.
        int k = choice % n;
        return k == 0 || p.seed() == null ? p : p.toBuilder().seed(p.seed() + k).build();
    }

    /** The echoed prompt text of a choice; empty without {@code echo}. */
    String echoOf(int choice) {
        return echo == null ? "" : echo.get(choice / n);
    }

    /**
     * The finish reason a choice reports: with {@link #echoOnly}, "length" (its max_tokens of 0 was reached before
     * the token the engine ran, which is not shown) unless it was aborted; else the engine's.
     */
    FinishReason finishOf(FinishReason engine) {
        return echoOnly && engine != FinishReason.ABORT ? FinishReason.LENGTH : engine;
    }

    int promptTokens() {
        int total = 0;
        for (int[] p : prompts) {
            total += p.length;
        }
        return total;
    }
}
