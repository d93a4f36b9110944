package ai.punica.engine;

/**
 * Where an engine hands a request instead of preempting it (Punica §5: when a GPU runs out of KV pages,
 * its newest request migrates to another GPU). The engine calls {@link #offer} on its own thread, at the
 * point where it would otherwise preempt; a cluster scheduler implements it. The engine package knows
 * nothing of clusters: this interface is the whole seam.
 */
@FunctionalInterface
public interface MigrationHook {

    /**
     * Offers a request the engine is about to preempt. Must not block (queue the work and return).
     *
     * @param continuation the request's state, see {@link Continuation}
     * @param listener     the request's listener: when the offer is taken, the new engine reports to it
     * @return true when another engine took the request (this engine then drops it without a word to the
     *         listener), false to preempt it locally
     */
    boolean offer(Continuation continuation, GenerationListener listener);
}
