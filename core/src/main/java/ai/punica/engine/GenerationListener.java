package ai.punica.engine;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.Consumer;

/**
 * Receives a request's output. Called on the engine thread: implementations must return at once
 * (hand the event to a queue), never block.
 */
public interface GenerationListener {
    void onToken(TokenDelta delta);

    /** Exactly one of {@link #onFinish} and {@link #onError} ends every accepted request. */
    void onFinish(Completion completion);

    void onError(EngineException error);

    /**
     * The request's prompt_logprobs (as {@link Completion#promptLogprobs}: one entry per prompt token, the first
     * null), told once, just before its first generated token, for a request that asked for them; the
     * {@link Completion} carries them again. A stream that shows the prompt with its log-probabilities (a
     * completion's {@code echo} with {@code logprobs}) sends them with that token. By default nothing happens.
     */
    default void onPromptLogprobs(List<PromptLogprob> promptLogprobs) {
    }

    /**
     * The engine preempted this request for lack of KV pages (no engine in this process took it over): it
     * waits on this engine and is recomputed from {@code continuation} when pages free up. Whoever owns the
     * request may go on with it elsewhere from that same state (a router's migration across processes,
     * docs/cluster.md) and then cancel it here. By default nothing happens.
     */
    default void onPreempted(Continuation continuation) {
    }

    /** A listener that hands each token to {@code tokens} and completes {@code done} with the request's end. */
    static GenerationListener completing(CompletableFuture<Completion> done, Consumer<TokenDelta> tokens) {
        return new GenerationListener() {
            @Override
            public void onToken(TokenDelta delta) {
                tokens.accept(delta);
            }

            @Override
            public void onFinish(Completion completion) {
                done.complete(completion);
            }

            @Override
            public void onError(EngineException error) {
                done.completeExceptionally(error);
            }
        };
    }
}
