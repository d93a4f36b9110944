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

    /** Devices an engine can be bound to (one engine per GPU); 0 for a backend that computes on the host. */
    default int deviceCount() {
        return 0;
    }

    /**
     * A backend bound to device {@code device} (0 for the first GPU). A backend without devices has only
     * "device" 0, itself.
     */
    default Backend create(int device) {
        if (device != 0) {
            throw new IllegalArgumentException("backend '" + name() + "' has no devices to choose from; device "
                    + device + " does not exist");
        }
        return create();
    }

    /**
     * {@link #create(int)}, and with {@code batchInvariant} a backend whose result for one row never depends on
     * the other rows of the call or on how the work is split ({@code --batch-invariant}): fixed reduction
     * orders whatever the batch. A backend that cannot promise that refuses here, before any device work.
     *
     * @throws IllegalArgumentException one line, when {@code batchInvariant} is asked of a backend that
     *                                  cannot honour it
     */
    default Backend create(int device, boolean batchInvariant) {
        if (batchInvariant) {
            throw new IllegalArgumentException("--batch-invariant is not available on the " + name() + " backend");
        }
        return create(device);
    }
}
