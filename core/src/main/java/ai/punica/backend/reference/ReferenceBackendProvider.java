package ai.punica.backend.reference;

import ai.punica.backend.AlwaysAvailableProvider;

/**
 * Registers the reference backend ("reference"): chosen automatically only when nothing else is, since
 * it is the plain scalar definition of each operation.
 */
public final class ReferenceBackendProvider extends AlwaysAvailableProvider {
    public ReferenceBackendProvider() {
        super("reference", 0, ReferenceBackend::new);
    }
}
