package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * CUDA matmul at decode batch sizes, where rows ≤ {@link CudaBackend#SKINNY_MAX_ROWS} run the skinny kernel
 * (gemm.cu) and more rows run cuBLAS, against {@link ReferenceBackend} on seeded random bf16 data.
 *
 * <p>Every case: ‖gpu − ref‖ / ‖ref‖ ≤ 1e-2 (bf16 output, float32 accumulation); the output starts as NaN
 * and the rows of the output tensor past the view must stay NaN; the same call twice, and a CUDA graph of
 * it launched twice, give bitwise-equal outputs (fixed split-K order, arrival counters that reset
 * themselves). Which path ran is asserted and printed on every "CHECK skinny-gemm" line.
 */
@Tag("gpu")
class CudaSkinnyGemmTest {
    static final double TOL = 1e-2;
    static final int[] ROWS = {1, 2, 3, 7, 8, 9, 16, 31, 32, 33, 64, CudaBackend.SKINNY_MAX_ROWS + 1};
    static final int MAX_ROWS = CudaBackend.SKINNY_MAX_ROWS + 1;

    static CudaBackend gpu;

    @BeforeAll
    static void open() {
        gpu = GpuChecks.openOrSkip("");
        gpu.setSkinnyGemm(true); // off by default (cuBLAS is faster on the H100); still kept correct
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
    }

    /** Llama-2-7B projections [out, in]: qkv, o, down, lm_head, and gate|up's shape turned around. */
    @Test
    void modelShapesMatchReferenceAtEveryDecodeBatchSize() {
        check(4096, 4096, 1);
        check(12288, 4096, 2);
        check(4096, 11008, 3);
        check(11008, 4096, 4);
        check(32000, 4096, 5);
    }

    /**
     * Tiles of fewer than 128 features (72, 24), an odd feature count (1001), an input width with a partial
     * 32-wide step (1000), and one that is not a multiple of 8 (1001: cuBLAS at every row count).
     */
    @Test
    void oddShapesMatchReference() {
        check(72, 1000, 6);
        check(24, 1000, 7);
        check(1001, 1000, 8);
        check(1000, 1001, 9);
        check(8, 40, 10);
    }

    /** The bias is added after the product, whichever path computed it. */
    @Test
    void biasIsAddedAfterTheSkinnyProduct() {
        int out = 72;
        int in = 1000;
        SplittableRandom rng = new SplittableRandom(12);
        float[] wv = random(rng, out * in, 0.05);
        float[] bv = random(rng, out, 1);
        float[] xv = random(rng, 7 * in, 1);
        TensorData wd = TensorData.of("w", DType.BF16, out, in, wv);
        TensorData bd = TensorData.of("b", DType.BF16, 1, out, bv);
        ReferenceBackend ref = new ReferenceBackend();
        Tensor rx = ref.allocate(7, in);
        ref.upload(xv, rx);
        Tensor ro = ref.allocate(7, out);
        ref.matmul(rx, ref.loadWeight(wd), ref.loadWeight(bd), ro);
        float[] want = new float[7 * out];
        ref.download(ro, want);

        Tensor w = gpu.loadWeight(wd);
        Tensor b = gpu.loadWeight(bd);
        Tensor x = gpu.allocate(7, in);
        gpu.upload(xv, x);
        Tensor o = gpu.allocate(7, out);
        gpu.upload(nans(7 * out), o);
        assertThat(gpu.usesSkinnyGemm(x, w, o)).isTrue();
        gpu.matmul(x, w, b, o);
        float[] got = new float[7 * out];
        gpu.download(o, got);
        double err = relativeError(got, want);
        System.out.printf("CHECK skinny-gemm bias %dx%d rows 7: relErr %.2e (tol %.0e) %s%n", out, in, err, TOL,
                err <= TOL ? "ok" : "FAIL");
        assertThat(err).isLessThanOrEqualTo(TOL);
        for (Tensor t : new Tensor[] {w, b, x, o}) {
            gpu.free(t);
        }
    }

    /** Every row count of {@link #ROWS} on one weight [out, in]: views of one x and one output of MAX_ROWS rows. */
    private static void check(int out, int in, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        float[] wv = random(rng, out * in, 1 / Math.sqrt(in));
        float[] xv = random(rng, MAX_ROWS * in, 1);
        TensorData wd = TensorData.of("w", DType.BF16, out, in, wv);
        float[] want = reference(wd, xv, MAX_ROWS, in, out);

        Tensor w = gpu.loadWeight(wd);
        Tensor x = gpu.allocate(MAX_ROWS, in);
        gpu.upload(xv, x);
        Tensor o = gpu.allocate(MAX_ROWS, out);
        float[] poison = nans(MAX_ROWS * out);
        float[] first = new float[MAX_ROWS * out];
        float[] second = new float[MAX_ROWS * out];
        float[] graphed = new float[MAX_ROWS * out];
        for (int rows : ROWS) {
            Tensor xr = x.firstRows(rows);
            Tensor or = o.firstRows(rows);
            boolean skinny = gpu.usesSkinnyGemm(xr, w, or);
            assertThat(skinny).as("skinny kernel for %d rows of %d", rows, in)
                    .isEqualTo(rows <= CudaBackend.SKINNY_MAX_ROWS && in % 8 == 0);

            gpu.upload(poison, o);
            gpu.matmul(xr, w, null, or);
            gpu.download(o, first);
            gpu.upload(poison, o);
            gpu.matmul(xr, w, null, or);
            gpu.download(o, second);
            gpu.upload(poison, o);
            try (CudaBackend.CudaGraph g = gpu.capture(() -> gpu.matmul(xr, w, null, or))) {
                g.launch();
                g.launch();
            }
            gpu.download(o, graphed);

            int n = rows * out;
            double err = relativeError(Arrays.copyOf(first, n), Arrays.copyOf(want, n));
            boolean untouched = IntStream.range(n, first.length).allMatch(i -> Float.isNaN(first[i]));
            boolean repeat = bitwiseEqual(first, second, n);
            boolean graph = bitwiseEqual(first, graphed, n);
            System.out.printf("CHECK skinny-gemm %5dx%-5d rows %2d %-7s relErr %.2e (tol %.0e) repeat %s graph %s"
                            + " rows past the view %s %s%n", out, in, rows, skinny ? "skinny" : "cublas", err, TOL,
                    repeat ? "bitwise" : "DIFFERS", graph ? "bitwise" : "DIFFERS", untouched ? "untouched" : "WRITTEN",
                    err <= TOL && repeat && graph && untouched ? "ok" : "FAIL");
            assertThat(err).as("%dx%d rows %d: relative error", out, in, rows).isLessThanOrEqualTo(TOL);
            assertThat(untouched).as("%dx%d rows %d: output rows past the view untouched", out, in, rows).isTrue();
            assertThat(repeat).as("%dx%d rows %d: the same call twice is bitwise equal", out, in, rows).isTrue();
            assertThat(graph).as("%dx%d rows %d: a graph replay is bitwise equal to the eager call", out, in, rows)
                    .isTrue();
        }
        gpu.free(w);
        gpu.free(x);
        gpu.free(o);
    }

    /**
     * ReferenceBackend's product for each row, the rows in parallel (the oracle is single-threaded; each
     * task has its own instance, and the weight is shared, not copied).
     */
    private static float[] reference(TensorData w, float[] x, int rows, int in, int out) {
        float[] result = new float[rows * out];
        IntStream.range(0, rows).parallel().forEach(r -> {
            ReferenceBackend ref = new ReferenceBackend();
            Tensor xr = ref.allocate(1, in);
            ref.upload(Arrays.copyOfRange(x, r * in, (r + 1) * in), xr);
            Tensor o = ref.allocate(1, out);
            ref.matmul(xr, ref.loadWeight(w), null, o);
            float[] row = new float[out];
            ref.download(o, row);
            System.arraycopy(row, 0, result, r * out, out);
        });
        return result;
    }

    static float[] nans(int n) {
        float[] v = new float[n];
        Arrays.fill(v, Float.NaN);
        return v;
    }

    static boolean bitwiseEqual(float[] a, float[] b, int n) {
        for (int i = 0; i < n; i++) {
            if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
                return false;
            }
        }
        return true;
    }

}
