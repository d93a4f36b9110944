package ai.punica.cluster;

import ai.punica.engine.Continuation;
import ai.punica.engine.Engine;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;

/**
 * Where an API front end sends generation requests: one engine, or a scheduler over several
 * ({@link EngineCluster}). Both check a request at once and throw an {@link ai.punica.engine.EngineException}
 * for a bad or refused one; output arrives on the listener.
 */
public interface GenerationService {

    void submit(GenerationRequest request, GenerationListener listener);

    /** Continues a request that began elsewhere (an engine that died, say); checked at once as submit is. */
    default void resume(Continuation continuation, GenerationListener listener) {
        resume(continuation, listener, false);
    }

    /**
     * As {@link #resume(Continuation, GenerationListener)}; {@code preempted}: the request comes back after a
     * preemption its owner took ({@link GenerationListener#onPreempted}) and found no other engine for, so it goes
     * to the head of the queue, as a request preempted here does.
     */
    void resume(Continuation continuation, GenerationListener listener, boolean preempted);

    /** Cancels a request wherever it is; it finishes with ABORT. Unknown ids are ignored. */
    void cancel(String requestId);

    /** One engine, as it is. */
    static GenerationService of(Engine engine) {
        return new LocalEngineHandle("0", engine);
    }
}
