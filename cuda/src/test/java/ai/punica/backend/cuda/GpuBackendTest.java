package ai.punica.backend.cuda;

import ai.punica.backend.reference.ReferenceBackend;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInfo;

/**
 * A gpu-tagged test class that compares {@link #gpu} with {@link #ref}: both opened once before the class's
 * tests (skipped where there is no usable device; gpu_check.sh counts that as a failure on a GPU machine) and
 * the device closed after them. Classes run one after another, never two at once in one JVM. Tests that compare
 * the paths a switch chooses run on {@link #gpuWith}'s backends, closed with {@link #gpu}.
 */
abstract class GpuBackendTest {
    static CudaBackend gpu;
    static ReferenceBackend ref;
    /** Backends with other switches than {@link #gpu}'s, one per option set, opened when first asked for. */
    private static final Map<CudaOptions, CudaBackend> variants = new LinkedHashMap<>();

    @BeforeAll
    static void openBackends(TestInfo test) {
        gpu = GpuChecks.openOrSkip(test.getTestClass().map(Class::getSimpleName).orElse(""));
        ref = new ReferenceBackend();
    }

    /**
     * A backend with {@link #gpu}'s switches changed by {@code change} (CUDA options are fixed when a backend
     * starts): {@link #gpu} itself when nothing changes, else one opened on the first call for that option set
     * and kept until the class's tests end. Tensors and caches belong to the backend that allocated them.
     */
    static CudaBackend gpuWith(UnaryOperator<CudaOptions.Builder> change) {
        CudaOptions options = change.apply(gpu.options().toBuilder()).build();
        return options.equals(gpu.options()) ? gpu : variants.computeIfAbsent(options, CudaBackend::new);
    }

    @AfterAll
    static void closeBackends() {
        for (CudaBackend variant : variants.values()) {
            variant.close();
        }
        variants.clear();
        if (gpu != null) {
            gpu.close();
            gpu = null;
        }
    }
}
