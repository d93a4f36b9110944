package ai.punica.engine;

import java.util.List;

/**
 * A request taken off one engine to go on on another (migration when KV pages run out, fail-over when an
 * engine dies): everything the receiving engine needs to produce exactly the tokens the first engine would
 * have produced next. The receiving engine re-prefills {@code promptTokens + generatedTokens} and samples the
 * next token; the client's stream continues from there, with no gap and no repeated token.
 *
 * <p>What is carried and what is derived (docs/cluster.md, "The continuation"):
 * <ul>
 *   <li>sampling parameters as sent (temperature, top-k/p, min-p, penalties, stop strings and token ids,
 *       ignore_eos, logprobs, max_tokens): {@code params}; tokens left = {@code max_tokens − generated};</li>
 *   <li>the random generator: the effective {@code seed} (the request's, or the one the first engine drew
 *       for it) and its position, {@code randomDraws} values already taken (one per sampled token of a
 *       non-greedy request);</li>
 *   <li>penalty counts are a function of the tokens: prompt token set and per-token counts of
 *       {@code generatedTokens}, rebuilt by the receiving engine;</li>
 *   <li>stop-string hold-back: the text already sent is the detokenized {@code generatedTokens} minus the
 *       suffix that could still start a stop string; the receiving engine replays the tokens through the
 *       same detokenizer and stop matcher, so it holds back exactly what the first engine held back;</li>
 *   <li>{@code logprobs}: those of the generated tokens, when the request asked for them (else empty), so a
 *       whole (non-streamed) response still has one entry per token.</li>
 * </ul>
 *
 * @param requestId       the id the request keeps across engines
 * @param adapter         the adapter, or null for the base model
 * @param promptTokens    the prompt's token ids
 * @param generatedTokens tokens generated so far, all of them sent (or to be sent) to the client
 * @param params          the request's sampling parameters, unchanged
 * @param seed            the effective seed of the request's random generator
 * @param randomDraws     values already drawn from that generator
 * @param logprobs        log-probabilities of {@code generatedTokens} (one per token), or empty
 */
public record Continuation(String requestId, String adapter, int[] promptTokens, int[] generatedTokens,
                           SamplingParams params, long seed, long randomDraws, List<TokenLogprob> logprobs) {

    public Continuation {
        promptTokens = promptTokens.clone();
        generatedTokens = generatedTokens.clone();
        logprobs = logprobs == null ? List.of() : List.copyOf(logprobs);
    }

    /** A request that has generated nothing yet: a continuation of it is the request itself. */
    public static Continuation start(GenerationRequest request, long seed) {
        return new Continuation(request.id(), request.adapter(), request.promptTokens(), new int[0],
                request.params(), seed, 0, List.of());
    }

    @Override
    public int[] promptTokens() {
        return promptTokens.clone();
    }

    @Override
    public int[] generatedTokens() {
        return generatedTokens.clone();
    }

    /** Tokens the receiving engine re-prefills. */
    public int totalTokens() {
        return promptTokens.length + generatedTokens.length;
    }

    public int generatedCount() {
        return generatedTokens.length;
    }

    /** max_tokens minus what was generated already. */
    public int tokensLeft() {
        return params.maxTokens() - generatedTokens.length;
    }

    /** The original request (prompt and parameters) this continues. */
    public GenerationRequest request() {
        return new GenerationRequest(requestId, adapter, promptTokens, params);
    }
}
