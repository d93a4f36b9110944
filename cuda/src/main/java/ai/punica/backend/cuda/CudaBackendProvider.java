package ai.punica.backend.cuda;

import ai.punica.backend.Backend;
import ai.punica.backend.BackendProvider;

/**
 * Registers the CUDA backend ("cuda") with {@code Backends}: available where libcuda loads and reports a
 * device of compute capability 8.0 or newer; preferred over the CPU backend.
 */
public final class CudaBackendProvider implements BackendProvider {
    private static volatile Boolean available;
    private static volatile String unavailableReason;

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public boolean available() {
        Boolean a = available;
        if (a == null) {
            synchronized (CudaBackendProvider.class) {
                if (available == null) {
                    try {
                        Driver d = Driver.get();
                        int count = d.deviceCount();
                        if (count == 0) {
                            unavailableReason = "libcuda reports no device";
                            available = false;
                        } else {
                            int major = d.deviceAttribute(d.device(0), Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
                            available = major >= 8;
                            if (major < 8) {
                                unavailableReason = "device 0 has compute capability " + major + ".x; bf16 needs 8.0+";
                            }
                        }
                    } catch (Throwable t) {
                        unavailableReason = t.getMessage();
                        available = false;
                    }
                }
                a = available;
            }
        }
        return a;
    }

    /** Why {@link #available()} said no (null when it said yes or was not asked). */
    public static String unavailableReason() {
        return unavailableReason;
    }

    @Override
    public int priority() {
        return 100;
    }

    @Override
    public boolean hasDevice() {
        return true;
    }

    @Override
    public int deviceCount() {
        return available() ? Driver.get().deviceCount() : 0;
    }

    @Override
    public Backend create() {
        return new CudaBackend(CudaOptions.fromSystemProperties());
    }

    @Override
    public Backend create(int device) {
        return new CudaBackend(CudaOptions.fromSystemProperties().toBuilder().device(device).build());
    }

    /** What {@link #create(int, boolean)} answers to {@code --batch-invariant}, before any device work. */
    static final String NOT_BATCH_INVARIANT = "--batch-invariant is not available on the CUDA backend yet: cuBLAS "
            + "chooses its GEMM algorithm (and split-K) by the step's row count, and the attention and tensor-core "
            + "SGMV kernels split their reductions by the step's shape; use --backend cpu or reference";

    @Override
    public Backend create(int device, boolean batchInvariant) {
        if (batchInvariant) {
            throw new IllegalArgumentException(NOT_BATCH_INVARIANT);
        }
        return create(device);
    }
}
