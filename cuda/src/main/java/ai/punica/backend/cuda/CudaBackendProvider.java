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

    /**
     * With {@code batchInvariant}, a backend whose kernels give a row the same bits whatever else its step holds
     * ({@link CudaOptions#batchInvariant()}); the other switches come from the system properties.
     */
    @Override
    public Backend create(int device, boolean batchInvariant) {
        if (batchInvariant) {
            return new CudaBackend(CudaOptions.fromSystemProperties().toBuilder().device(device).batchInvariant(true)
                    .build());
        }
        return create(device);
    }
}
