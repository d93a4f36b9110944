package ai.punica.backend;

import java.util.Optional;

/**
 * What only some backends have, each with a default meaning "not here": step graphs, device memory
 * figures, a per-operation profile.
 */
public interface DeviceCapabilities {

    /** Free and total memory of this backend's own device; empty where it computes in host memory. */
    default Optional<DeviceMemory> deviceMemory() {
        return Optional.empty();
    }

    /**
     * Host memory this backend copies weights from without staging (page-locked memory on a GPU), for adapters'
     * host copies; empty where it computes in host memory, or has none.
     */
    default Optional<PinnedHostMemory> pinnedHostMemory() {
        return Optional.empty();
    }

    /**
     * Whether projections should keep their LoRA add-on apart for their consumer
     * ({@link LoraOps#matmulLoraApart}): true where the add-on then runs beside the GEMM (a GPU's second stream)
     * and the consumer reads it in its own pass; false where that would only add passes (the default).
     */
    default boolean loraApart() {
        return false;
    }

    /**
     * Records and replays whole forward steps (CUDA graphs), or null when this backend has no such
     * mechanism and every step runs operation by operation.
     */
    default StepRecorder stepRecorder() {
        return null;
    }

    /**
     * Device time per operation since the last call, as a printable table, when this backend was asked
     * to record it (the CUDA backend with {@code -Dpunica.cuda.profile=true}); null when it does not.
     */
    default String profileReport() {
        return null;
    }
}
