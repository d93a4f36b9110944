package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.cpu.CpuBackend;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Issue 14 item 5, the engine's half: on a backend whose operations are row-independent (the reference
 * backend), a request's tokens and log-probs are the same bits whether it runs alone or shares its steps with
 * other tenants' requests (other adapters, the base model, other prompt lengths, seeded sampling, prefill chunks
 * of later arrivals beside its decode rows). So the scheduler, the row layout, the SGMV segments and the sampler
 * add no dependence on the batch. The CPU backend is batch-invariant with {@code batchInvariant} (issue 14 item 5,
 * {@code --batch-invariant}): its GEMM then never blocks k and never takes the transposed LoRA-expand form. By
 * default it is not: it blocks k only for row tiles of more than 16 rows and takes the transposed form from 4 rows,
 * so a log-prob differs by a few ulps with the batch ({@link #theDefaultCpuGemmSumsARowDifferentlyInABatch}). On CUDA
 * cuBLAS picks its GEMM by batch size and the attention and tensor-core SGMV kernels split their reductions by the
 * step's shape by default; with the option it calls cuBLAS at a fixed row count and keeps to the general attention
 * kernel and unsplit SGMV (CudaBatchInvarianceTest, on a GPU).
 */
class BatchInvarianceTest {
    @ParameterizedTest
    @CsvSource({"reference, false", "reference, true", "cpu, true"})
    void aRequestsLogprobsAreTheSameBitsAloneAndInAnyBatch(String backend, boolean invariant) throws Exception {
        List<String> differences = BatchInvarianceProbe.differences(backend, invariant);
        assertThat(differences).as(backend + (invariant ? " --batch-invariant" : "")).isEmpty();
    }

    /**
     * Shows what the option buys, at the GEMM where it acts: without it the CPU backend sums a row's product over
     * k = 4,096 in one pass when the row is alone and in blocks of 1,024 when it is one of 32 rows, so some outputs
     * differ in their last bits (Vector API kernels, one thread); with it, every output is the same bits. (An engine-level version of this check
     * depended on which kernels the JIT had compiled, and so on timing: the fixture model's k is below the block.)
     * If a change of the default kernels made them invariant, this fails and the class comment must change.
     */
    @Test
    void theDefaultCpuGemmSumsARowDifferentlyInABatch() {
        int k = 4096;
        int n = 64;
        int rows = 32;
        java.util.SplittableRandom random = new java.util.SplittableRandom(7);
        float[] x = new float[rows * k];
        float[] w = new float[n * k];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) random.nextDouble(-1, 1);
        }
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) random.nextDouble(-1, 1);
        }
        TensorData weight = TensorData.of("w", DType.BF16, n, k, w);
        for (boolean invariant : List.of(false, true)) {
            // One thread: the backend splits rows among its threads, and a piece of 16 rows or fewer is not blocked.
            CpuBackend.Options options = new CpuBackend.Options(1, true, invariant);
            try (CpuBackend cpu = new CpuBackend(options)) {
                Tensor wt = cpu.loadWeight(weight);
                float[] alone = product(cpu, wt, Arrays.copyOf(x, k), 1, k, n);
                float[] inBatch = product(cpu, wt, x, rows, k, n);
                int differing = 0;
                for (int o = 0; o < n; o++) {
                    if (Float.floatToRawIntBits(alone[o]) != Float.floatToRawIntBits(inBatch[o])) {
                        differing++;
                    }
                }
                if (invariant) {
                    assertThat(differing).as("outputs of row 0 that differ alone and in 32 rows, --batch-invariant")
                            .isZero();
                } else {
                    assertThat(differing).as("outputs of row 0 that differ alone and in 32 rows, default").isPositive();
                }
            }
        }
    }

    /** x [rows, k] times w [n, k]ᵀ on {@code cpu}; the first row of the product. */
    private static float[] product(CpuBackend cpu, Tensor w, float[] x, int rows, int k, int n) {
        Tensor xt = cpu.allocate(rows, k);
        cpu.upload(x, xt);
        Tensor out = cpu.allocate(rows, n);
        cpu.matmul(xt, w, null, out);
        float[] all = new float[rows * n];
        cpu.download(out, all);
        return Arrays.copyOf(all, n);
    }

}
