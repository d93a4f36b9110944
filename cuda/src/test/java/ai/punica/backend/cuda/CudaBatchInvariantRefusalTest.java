package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

/**
 * {@code --batch-invariant} is refused on the CUDA backend, in one line and before any device work (so this runs
 * on a machine without a GPU): its kernels are not batch-invariant yet, and the option must not be faked.
 */
class CudaBatchInvariantRefusalTest {

    @Test
    void theCudaProviderRefusesBatchInvarianceBeforeTouchingADevice() {
        CudaBackendProvider provider = new CudaBackendProvider();
        assertThatThrownBy(() -> provider.create(0, true)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage(CudaBackendProvider.NOT_BATCH_INVARIANT)
                .hasMessageStartingWith("--batch-invariant is not available on the CUDA backend yet: ");
        assertThat(CudaBackendProvider.NOT_BATCH_INVARIANT).doesNotContain("\n");
    }
}
