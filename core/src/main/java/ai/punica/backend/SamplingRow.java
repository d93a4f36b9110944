package ai.punica.backend;

/**
 * How {@link Backend#sample} picks the token of one logit row (vLLM's order: penalties, then greedy or
 * temperature → top-k → top-p → min-p → draw). {@link ScalarSampler} is the definition.
 *
 * @param temperature       0: greedy (argmax, lowest index on ties); else logits are divided by it
 * @param topK              keep the k most likely tokens (all tokens equal to the k-th too); 0 or -1: all
 * @param topP              keep the smallest set of most likely tokens whose mass reaches topP of the
 *                          mass top-k kept (tokens equal to the last one kept stay too); 1: all
 * @param minP              drop tokens below minP · p(most likely); 0: none
 * @param repetitionPenalty HF/CTRL: positive logits of penalty tokens divided by it, negative multiplied; 1: off
 * @param presencePenalty   OpenAI: subtracted once from the logit of every generated token
 * @param frequencyPenalty  OpenAI: subtracted once per time a token was generated
 * @param uniform           the draw in [0, 1): the token is the first, in index order, whose inclusive
 *                          cumulative kept probability exceeds uniform × kept mass (unused when greedy)
 * @param logprobs          -1: none; 0: the chosen token's log-probability; n ≤ {@link #MAX_LOGPROBS}:
 *                          also the n most likely tokens'; always from the raw logits
 */
public record SamplingRow(float temperature, int topK, float topP, float minP, float repetitionPenalty,
                          float presencePenalty, float frequencyPenalty, double uniform, int logprobs) {

    public static final int MAX_LOGPROBS = 20;

    /** Argmax of the logits, nothing else: for rows whose token nobody reads. */
    public static final SamplingRow GREEDY = new SamplingRow(0f, 0, 1f, 0f, 1f, 0f, 0f, 0, -1);

    public boolean isGreedy() {
        return temperature == 0f;
    }

    /** Whether penalty tokens change this row's logits at all. */
    public boolean hasPenalties() {
        return repetitionPenalty != 1f || presencePenalty != 0f || frequencyPenalty != 0f;
    }
}
