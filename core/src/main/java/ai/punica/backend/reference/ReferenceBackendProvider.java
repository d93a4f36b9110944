package ai.punica.backend.reference;

import ai.punica.backend.AlwaysAvailableProvider;
import ai.punica.backend.Backend;

/**
 * Registers the reference backend ("reference"): chosen automatically only when nothing else is, since
 * it is the plain scalar definition of each operation.
 */
public final class ReferenceBackendProvider extends AlwaysAvailableProvider {
    public ReferenceBackendProvider() {
        super("reference", 0, ReferenceBackend::new);
    }

    /**
     * The reference backend is batch-invariant as it is: every operation is a plain scalar loop per row,
     * in an order fixed by the shapes of the model, never by the batch.
     */
    @Override
    public Backend create(int device, boolean batchInvariant) {
        return create(device);
    }
}
