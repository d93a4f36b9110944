package ai.punica.engine;

/**
 * One generation: the prompt's token ids, the adapter (null for the base model) and how to sample.
 *
 * @param id a caller-chosen id, unique among live requests (used to cancel)
 */
public record GenerationRequest(String id, String adapter, int[] promptTokens, SamplingParams params) {
    public GenerationRequest {
        promptTokens = promptTokens.clone();
    }

    @Override
    public int[] promptTokens() {
        return promptTokens.clone();
    }

    int promptLength() {
        return promptTokens.length;
    }

    int promptToken(int i) {
        return promptTokens[i];
    }
}
