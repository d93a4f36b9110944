package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.punica.backend.cpu.CpuBackend;
import ai.punica.parallel.TensorParallel;
import java.util.List;
import java.util.ServiceLoader;
import org.junit.jupiter.api.Test;

/**
 * NCCL is bound only when a tensor-parallel group on the CUDA backend is made: registering the provider
 * loads nothing, and a machine without libnccl gets one message saying what to install. Runs without a GPU.
 */
class NcclLoadingTest {

    @Test
    void theCudaModuleRegistersNcclForTheCudaBackendWithoutLoadingIt() {
        List<TensorParallel.CommunicatorProvider> providers = ServiceLoader.load(TensorParallel.CommunicatorProvider.class)
                .stream().map(ServiceLoader.Provider::get).toList();
        assertThat(providers).anySatisfy(p -> {
            assertThat(p.backend()).isEqualTo("cuda");
            assertThat(p.factory()).isNotNull(); // no library touched yet
        });
    }

    @Test
    void nonCudaRanksAreRefusedBeforeNcclIsNeeded() {
        try (CpuBackend cpu = new CpuBackend()) {
            assertThatThrownBy(() -> NcclCommunicator.group(List.of(cpu, cpu)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageStartingWith("NCCL communicators need CUDA backends; rank 0 runs on cpu");
        }
    }

    @Test
    void aMissingLibncclSaysWhatToInstall() {
        boolean present;
        try {
            Nccl.get();
            present = true;
        } catch (CudaException e) {
            present = false;
            assertThat(e.getMessage()).startsWith("tensor parallelism on the CUDA backend needs NCCL (libnccl.so.2), "
                    + "which is not installed here").contains("run without --tensor-parallel").doesNotContain("\n");
        }
        assumeTrue(!present, "libnccl is installed here; the message for a missing one is not reachable");
    }
}
