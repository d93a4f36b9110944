package ai.punica.engine;

/** Why a generation ended, with the name OpenAI's API uses. */
public enum FinishReason {
    /** End-of-sequence token, stop token id or stop string. */
    STOP("stop"),
    /** max_tokens reached, or the context is full. */
    LENGTH("length"),
    /** Cancelled by the caller (client gone) or by shutdown. */
    ABORT("abort");

    private final String openAiName;

    FinishReason(String openAiName) {
        this.openAiName = openAiName;
    }

    public String openAiName() {
        return openAiName;
    }
}
