package ai.punica.cluster;

/**
 * What a placement decides on: the request's adapter (null for the base model) and its tokens to prefill
 * (the prompt, or prompt + generated tokens for a migration).
 */
public record Placement(String adapter, int tokens) {
    public Placement {
        if (tokens < 1) {
            throw new IllegalArgumentException("a request has at least one token, got " + tokens);
        }
    }
}
