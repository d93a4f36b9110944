package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaOptions#gemmTuning()}: projections whose GEMM algorithm was chosen by timing ({@link TunedGemms}) give the
 * reference's result at decode and prefill shapes, bf16 and float32 outputs, the same bits on every call after the
 * choice, and within float32-summation-order distance of cublasGemmEx's result; each shape is timed once.
 */
@Tag("gpu")
class CudaGemmTuningTest extends GpuBackendTest {
    static final double TOL = 1e-2;

    @Test
    void tunedGemmsMatchTheReferenceAndCublasGemmEx() {
        CudaBackend tuned = gpuWith(o -> o.gemmTuning(true));
        SplittableRandom rng = new SplittableRandom(11);
        // Llama-2-7B's q|k|v, o, gate|up and down at decode batches, an odd shape, and a prefill chunk.
        int[][] shapes = {{32, 4096, 12288}, {32, 4096, 4096}, {64, 4096, 22016}, {128, 11008, 4096}, {7, 100, 300},
                {1, 4096, 4096}, {256, 4096, 4096}};
        for (int[] s : shapes) {
            int rows = s[0];
            int in = s[1];
            int out = s[2];
            float[] xs = random(rng, rows * in, 1);
            TensorData w = TensorData.of("w", DType.BF16, out, in, random(rng, out * in, 0.05));
            float[] want = runFreeing(ref, ref.loadWeight(w), xs, rows, in, out, false);
            float[] plain = runFreeing(gpu, gpu.loadWeight(w), xs, rows, in, out, false);
            Tensor tw = tuned.loadWeight(w);
            float[] first = run(tw, xs, rows, in, out, tuned, false);
            float[] second = run(tw, xs, rows, in, out, tuned, false);
            tuned.free(tw);
            String what = "tuned gemm " + rows + "x" + in + " -> " + out;
            double err = relativeError(first, want);
            double fromPlain = relativeError(first, plain);
            System.out.printf("CHECK %-50s relErr %.2e (tol %.0e), from cublasGemmEx %.2e %s%n", what, err, TOL,
                    fromPlain, err <= TOL ? "ok" : "FAIL");
            assertThat(err).as(what + ": against the reference").isLessThanOrEqualTo(TOL);
            assertThat(fromPlain).as(what + ": against cublasGemmEx (another summation order at most)")
                    .isLessThanOrEqualTo(4e-3);
            GpuChecks.assertBitIdentical(what + ", a second call", second, first);
        }
        var choices = tuned.gemmChoices();
        System.out.println("CHECK tuned GEMM choices: " + choices);
        assertThat(choices).as("one timed choice per shape").hasSize(shapes.length);
    }

    @Test
    void float32LogitsTakeTheTunedPathToo() {
        CudaBackend tuned = gpuWith(o -> o.gemmTuning(true));
        SplittableRandom rng = new SplittableRandom(12);
        int rows = 32;
        int in = 4096;
        int vocab = 32000;
        float[] xs = random(rng, rows * in, 1);
        TensorData w = TensorData.of("lm_head", DType.BF16, vocab, in, random(rng, vocab * in, 0.05));
        float[] got = runFreeing(tuned, tuned.loadWeight(w), xs, rows, in, vocab, true);
        float[] want = runFreeing(ref, ref.loadWeight(w), xs, rows, in, vocab, false);
        double err = relativeError(got, want);
        System.out.printf("CHECK tuned gemm f32 logits 32x4096 -> 32000 relErr %.2e (tol %.0e) %s%n", err, TOL,
                err <= TOL ? "ok" : "FAIL");
        assertThat(err).isLessThanOrEqualTo(TOL);
    }

    /** {@link #run}, then frees {@code w}. */
    private static float[] runFreeing(Backend b, Tensor w, float[] xs, int rows, int in, int out, boolean logits) {
        float[] got = run(w, xs, rows, in, out, b, logits);
        b.free(w);
        return got;
    }

    /** {@code x·wᵀ} on {@code b} into bf16 rows, or float32 logits ({@link Backend#allocateLogits}), downloaded. */
    private static float[] run(Tensor w, float[] xs, int rows, int in, int out, Backend b, boolean logits) {
        Tensor x = b.allocate(rows, in);
        b.upload(xs, x);
        Tensor y = logits ? b.allocateLogits(rows, out) : b.allocate(rows, out);
        b.matmul(x, w, null, y);
        float[] got = new float[rows * out];
        b.download(y, got);
        b.free(x);
        b.free(y);
        return got;
    }
}
