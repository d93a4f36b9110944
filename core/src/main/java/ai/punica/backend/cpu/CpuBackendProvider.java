package ai.punica.backend.cpu;

import ai.punica.backend.Backend;
import ai.punica.backend.BackendProvider;

/**
 * Registers the CPU backend ("cpu") through {@code META-INF/services}: always available, preferred over
 * the reference backend, below any accelerator.
 */
public final class CpuBackendProvider implements BackendProvider {
    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public boolean available() {
        return true;
    }

    @Override
    public int priority() {
        return 10;
    }

    @Override
    public Backend create() {
        return new CpuBackend();
    }
}
