package ai.punica.backend.cuda;

import ai.punica.backend.reference.ReferenceBackend;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInfo;

/**
 * A gpu-tagged test class that compares {@link #gpu} with {@link #ref}: both opened once before the class's
 * tests (skipped where there is no usable device; gpu_check.sh counts that as a failure on a GPU machine) and
 * the device closed after them. Classes run one after another, never two at once in one JVM.
 */
abstract class GpuBackendTest {
    static CudaBackend gpu;
    static ReferenceBackend ref;

    @BeforeAll
    static void openBackends(TestInfo test) {
        gpu = GpuChecks.openOrSkip(test.getTestClass().map(Class::getSimpleName).orElse(""));
        ref = new ReferenceBackend();
    }

    @AfterAll
    static void closeBackends() {
        if (gpu != null) {
            gpu.close();
            gpu = null;
        }
    }
}
