package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.engine.BatchInvarianceProbe;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Issue 14 item 5 on CUDA: with {@link CudaOptions#batchInvariant()} a row's results are the same bits whatever else
 * its step holds. At the projection (Llama-2-7B's k = 4,096, bf16 and fp32 outputs): row 0 alone, among 7, 64, 65 and
 * 200 rows, and the last row of 200 alone. On the engine: the fixture probe alone, with seven other tenants' requests
 * and among later arrivals' prefill chunks ({@link BatchInvarianceProbe}), tokens and every log-prob bit. The default
 * backend's differences at the projection are printed (cuBLAS picks its kernel by row count), not asserted: which
 * shapes it sums differently is cuBLAS's business.
 */
@Tag("gpu")
class CudaBatchInvarianceTest extends GpuBackendTest {
    private static final int K = 4096;
    private static final int N = 1024;
    private static final int[] ROWS = {1, 7, 64, 65, 200};

    @Test
    void aProjectionRowIsTheSameBitsInEveryBatchSize() {
        SplittableRandom rng = new SplittableRandom(14);
        float[] x = random(rng, ROWS[ROWS.length - 1] * K, 1.0); // bf16 values
        TensorData w = TensorData.of("w", DType.BF16, N, K, random(rng, N * K, 0.05));
        CudaBackend invariant = gpuWith(b -> b.batchInvariant(true));
        for (boolean logits : new boolean[] {false, true}) {
            int differingDefault = 0;
            for (CudaBackend backend : List.of(invariant, gpu)) {
                Tensor wt = backend.loadWeight(w);
                float[] alone = product(backend, wt, x, 0, 1, logits);
                float[] lastAlone = product(backend, wt, x, ROWS[ROWS.length - 1] - 1, 1, logits);
                int differing = 0;
                for (int rows : ROWS) {
                    float[] all = product(backend, wt, x, 0, rows, logits);
                    differing += differingBits(alone, Arrays.copyOf(all, N));
                    if (rows == ROWS[ROWS.length - 1]) {
                        differing += differingBits(lastAlone, Arrays.copyOfRange(all, (rows - 1) * N, rows * N));
                    }
                }
                backend.free(wt);
                if (backend == invariant) {
                    assertThat(differing).as("outputs that differ from the row alone, batch-invariant, %s",
                            logits ? "fp32" : "bf16").isZero();
                } else {
                    differingDefault = differing;
                }
            }
            System.out.printf("CHECK batch-invariant projection (%s out, k %d, n %d, rows %s): 0 outputs differ from "
                    + "the row alone; default backend: %d%n", logits ? "fp32" : "bf16", K, N, Arrays.toString(ROWS),
                    differingDefault);
        }
    }

    @Test
    void aRequestsLogprobsAreTheSameBitsAloneAndInAnyBatch() throws Exception {
        List<String> differences = BatchInvarianceProbe.differences("cuda", true);
        System.out.printf("CHECK batch-invariant engine on CUDA: %d differences %s%n", differences.size(),
                differences.isEmpty() ? "ok" : differences.subList(0, Math.min(5, differences.size())));
        assertThat(differences).isEmpty();
    }

    /** Rows {@code [from, from + rows)} of x times wᵀ, downloaded as floats. */
    private static float[] product(CudaBackend backend, Tensor w, float[] x, int from, int rows, boolean logits) {
        Tensor xt = backend.allocate(rows, K);
        Tensor out = logits ? backend.allocateLogits(rows, N) : backend.allocate(rows, N);
        try {
            backend.upload(Arrays.copyOfRange(x, from * K, (from + rows) * K), xt);
            backend.matmul(xt, w, null, out);
            float[] result = new float[rows * N];
            backend.download(out, result);
            return result;
        } finally {
            backend.free(xt);
            backend.free(out);
        }
    }

    private static int differingBits(float[] a, float[] b) {
        int n = 0;
        for (int i = 0; i < a.length; i++) {
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
                n++;
            }
        }
        return n;
    }
}
