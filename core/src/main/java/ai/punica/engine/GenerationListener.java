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
     * The engine must preempt this request for lack of KV pages (no engine in this process took it over). Return
     * true to take it: the request then leaves this engine silently at {@code continuation}'s state (no
     * {@link #onFinish}, its pages and queue place given up), and its owner goes on with it elsewhere or brings it
     * back with {@link ai.punica.cluster.GenerationService#resume(Continuation, GenerationListener, boolean)} (a
     * router's migration across processes, docs/cluster.md). Return false (the default) and it waits on this engine,
     * recomputed from that state when pages free up.
     */
    default boolean onPreempted(Continuation continuation) {
        return false;
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
