package ai.punica.backend.reference;

import ai.punica.backend.Backend;
import ai.punica.backend.BackendProvider;

/**
 * Registers the reference backend ("reference") through {@code META-INF/services}: always available,
 * chosen automatically only when nothing else is, since it is the plain scalar definition of each op.
 */
public final class ReferenceBackendProvider implements BackendProvider {
    @Override
    public String name() {
        return "reference";
    }

    @Override
    public boolean available() {
        return true;
    }

    @Override
    public int priority() {
        return 0;
    }

    @Override
    public Backend create() {
        return new ReferenceBackend();
    }
}
