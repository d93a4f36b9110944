package ai.punica.backend;

/**
 * Makes a backend. Providers outside core (the CUDA module) register through
 * {@code META-INF/services/ai.punica.backend.BackendProvider}, so core never depends on them.
 */
public interface BackendProvider {
    /** "cpu", "reference", "cuda". */
    String name();

    /** Whether this machine can run the backend (a GPU is present, its libraries load). */
    boolean available();

    /** Higher wins when the backend is chosen automatically. */
    int priority();

    /**
     * Whether the backend computes on an accelerator with memory of its own (a GPU): engines on it get
     * larger default sizes ({@code EngineConfig.deviceDefaults()}) and a KV cache sized from that memory.
     */
    default boolean hasDevice() {
        return false;
    }

    Backend create();
}
