package ai.punica.backend.cpu;

import ai.punica.backend.AlwaysAvailableProvider;
import ai.punica.backend.Backend;

/** Registers the CPU backend ("cpu"): preferred over the reference backend, below any accelerator. */
public final class CpuBackendProvider extends AlwaysAvailableProvider {
    public CpuBackendProvider() {
        super("cpu", 10, CpuBackend::new);
    }

    /** With {@code batchInvariant}: {@link CpuBackend.Options#withBatchInvariant}. */
    @Override
    public Backend create(int device, boolean batchInvariant) {
        if (device != 0) {
            return create(device); // refuses: the CPU has no devices to choose from
        }
        return new CpuBackend(CpuBackend.Options.defaults().withBatchInvariant(batchInvariant));
    }
}
