package ai.punica.backend.cpu;

import ai.punica.backend.AlwaysAvailableProvider;

/** Registers the CPU backend ("cpu"): preferred over the reference backend, below any accelerator. */
public final class CpuBackendProvider extends AlwaysAvailableProvider {
    public CpuBackendProvider() {
        super("cpu", 10, CpuBackend::new);
    }
}
