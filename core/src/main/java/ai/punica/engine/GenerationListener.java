package ai.punica.engine;

/**
 * Receives a request's output. Called on the engine thread: implementations must return at once
 * (hand the event to a queue), never block.
 */
public interface GenerationListener {
    void onToken(TokenDelta delta);

    /** Exactly one of {@link #onFinish} and {@link #onError} ends every accepted request. */
    void onFinish(Completion completion);

    void onError(EngineException error);
}
