package ai.punica.backend;

import static ai.punica.backend.BackendComparison.assertClose;
import static ai.punica.backend.BackendComparison.download;
import static ai.punica.backend.BackendComparison.maxAbs;
import static ai.punica.backend.BackendComparison.nans;
import static ai.punica.backend.BackendComparison.random;
import static ai.punica.backend.BackendComparison.upload;
import static ai.punica.backend.BackendComparison.weight;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.BackendComparison.Variant;
import ai.punica.backend.cpu.CpuBackend;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every dense operation of the CPU backend (vector and scalar kernels, pooled and single-threaded)
 * against the reference backend on seeded random data, for each weight dtype and at odd shapes.
 *
 * <p>Tolerances: products and norms accumulate in float32 on the CPU and in double in the reference,
 * so they are compared by relative error ‖cpu − ref‖₂/‖ref‖₂ ≤ 1e-5 and max abs error ≤ 1e-5 · max|ref|
 * (observed at most 1.3e-6 relative, for k = 4095, and 2.1e-6 · max|ref| abs). Element-wise ops (rope,
 * swiglu: float32 against double rounding, vector exp within an ulp or two) use 1e-6 relative and
 * 1e-6 · max|ref| (observed 7e-8 and 1.2e-7). Copies and conversions (embedding, gatherRows, add,
 * upload) must be exact.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class CpuDenseOpsTest {

    private static final double PRODUCT_REL = 1e-5;
    private static final double PRODUCT_ABS = 1e-5;
    private static final double ELEMENTWISE_REL = 1e-6;
    private static final double ELEMENTWISE_ABS = 1e-6;

    private final ReferenceBackend ref = new ReferenceBackend();
    /** Reference results are computed once per case and shared by the variants. */
    private final Map<String, float[]> expected = new ConcurrentHashMap<>();
    private final List<CpuBackend> cpus = new ArrayList<>();

    @BeforeAll
    void checkVectorPathIsTested() {
        assertThat(CpuBackend.vectorModulePresent()).as("tests run with --add-modules jdk.incubator.vector").isTrue();
    }

    @AfterAll
    void close() {
        cpus.forEach(CpuBackend::close);
        ref.close();
    }

    private CpuBackend cpu(Variant variant) {
        CpuBackend cpu = variant.create();
        cpus.add(cpu);
        assertThat(cpu.vectorized()).isEqualTo(variant.options().vector());
        return cpu;
    }

    /**
     * (rows, in, out): single elements, odd sizes, k tails, long k unblocked (few rows) and blocked
     * (more than 16 rows, k split 1024 + 1576), a row tail past a 64-row tile.
     */
    private static final int[][] MATMUL_SHAPES = {
        {1, 1, 1}, {1, 7, 5}, {3, 33, 9}, {5, 130, 17}, {16, 256, 64}, {2, 4095, 6}, {9, 2600, 40}, {70, 520, 301},
        {21, 2600, 70},
    };

    static Stream<Arguments> matmulCases() {
        List<Arguments> cases = new ArrayList<>();
        BackendComparison.variants().forEach(variant -> {
            for (DType dtype : DType.values()) {
                for (int s = 0; s < MATMUL_SHAPES.length; s++) {
                    cases.add(Arguments.of(variant, dtype, s));
                }
            }
        });
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}, {1} weights, shape #{2}")
    @MethodSource("matmulCases")
    void matmulMatchesReference(Variant variant, DType dtype, int shapeIndex) {
        int[] shape = MATMUL_SHAPES[shapeIndex];
        int rows = shape[0];
        int in = shape[1];
        int out = shape[2];
        boolean withBias = shapeIndex % 2 == 1;
        SplittableRandom random = new SplittableRandom(1000 + 31L * shapeIndex + dtype.ordinal());
        float[] x = random(random, rows * in, 1);
        TensorData w = weight("w", dtype, out, in, random(random, out * in, 0.5),
                shapeIndex % 3 == 0 ? -1 : shapeIndex % 3 == 1 ? 0 : 2);
        TensorData bias = withBias ? weight("bias", dtype, 1, out, random(random, out, 1), 1) : null;

        float[] want = expected.computeIfAbsent("matmul " + dtype + " " + shapeIndex, key -> {
            Tensor o = ref.allocate(rows, out);
            ref.matmul(upload(ref, rows, in, x), ref.loadWeight(w), bias == null ? null : ref.loadWeight(bias), o);
            return download(ref, o);
        });

        CpuBackend cpu = cpu(variant);
        Tensor o = upload(cpu, rows, out, nans(rows * out));
        cpu.matmul(upload(cpu, rows, in, x), cpu.loadWeight(w), bias == null ? null : cpu.loadWeight(bias), o);
        assertClose("matmul " + rows + "x" + in + " · " + out + "x" + in + " " + dtype + " on " + variant,
                download(cpu, o), want, rows * out, PRODUCT_REL, PRODUCT_ABS * Math.max(1, maxAbs(want, want.length)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("ai.punica.backend.BackendComparison#variants")
    void matmulOfFusedWeightsMatchesSeparateMatmuls(Variant variant) {
        SplittableRandom random = new SplittableRandom(5);
        int in = 40;
        TensorData q = weight("q", DType.BF16, 24, in, random(random, 24 * in, 1), 0);
        TensorData k = weight("k", DType.BF16, 8, in, random(random, 8 * in, 1), -1);
        TensorData v = weight("v", DType.BF16, 8, in, random(random, 8 * in, 1), 2);
        float[] x = random(random, 3 * in, 1);
        CpuBackend cpu = cpu(variant);
        Tensor fused = cpu.concatRows("qkv", List.of(q, k, v));
        assertThat(fused.rows()).isEqualTo(40);
        assertThat(fused.dtype()).isEqualTo(DType.BF16);
        Tensor xs = upload(cpu, 3, in, x);
        Tensor out = upload(cpu, 3, 40, nans(120));
        cpu.matmul(xs, fused, null, out);
        float[] got = download(cpu, out);
        int col = 0;
        for (TensorData part : List.of(q, k, v)) {
            Tensor partOut = upload(ref, 3, (int) part.dim(0), nans(3 * (int) part.dim(0)));
            ref.matmul(upload(ref, 3, in, x), ref.loadWeight(part), null, partOut);
            float[] want = download(ref, partOut);
            for (int r = 0; r < 3; r++) {
                for (int c = 0; c < part.dim(0); c++) {
                    assertThat(got[r * 40 + col + c]).isCloseTo(want[r * (int) part.dim(0) + c],
                            org.assertj.core.api.Assertions.within(1e-4f));
                }
            }
            col += (int) part.dim(0);
        }
    }

    static Stream<Arguments> variantsAndDtypes() {
        return BackendComparison.variants().flatMap(v -> Stream.of(DType.values()).map(d -> Arguments.of(v, d)));
    }

    @ParameterizedTest(name = "{0}, {1} table")
    @MethodSource("variantsAndDtypes")
    void embeddingGathersRowsExactly(Variant variant, DType dtype) {
        SplittableRandom random = new SplittableRandom(21);
        int vocab = 50;
        int hidden = 37;
        TensorData table = weight("embed", dtype, vocab, hidden, random(random, vocab * hidden, 2), 1);
        int[] ids = {3, 49, 0, 3, 17, 25, 8};
        Tensor want = ref.allocate(ids.length, hidden);
        ref.embedding(ref.loadWeight(table), ids, want);
        CpuBackend cpu = cpu(variant);
        Tensor got = upload(cpu, ids.length, hidden, nans(ids.length * hidden));
        cpu.embedding(cpu.loadWeight(table), ids, got);
        assertThat(download(cpu, got)).containsExactly(download(ref, want));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("ai.punica.backend.BackendComparison#variants")
    void fp16WeightsConvertExactlyForAllBitPatterns(Variant variant) {
        // A [4096, 16] fp16 table holding every 16-bit pattern once: normals, subnormals, ±0, ±inf, NaNs.
        java.lang.foreign.MemorySegment bits = java.lang.foreign.MemorySegment.ofArray(new byte[2 * 65536]);
        for (int i = 0; i < 65536; i++) {
            bits.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), 2L * i, (short) i);
        }
        TensorData table = new TensorData("all-f16", DType.F16, new long[] {4096, 16}, bits);
        int[] ids = new int[4096];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = i;
        }
        CpuBackend cpu = cpu(variant);
        Tensor out = cpu.allocate(4096, 16);
        cpu.embedding(cpu.loadWeight(table), ids, out);
        float[] got = download(cpu, out);
        for (int i = 0; i < 65536; i++) {
            float want = Float.float16ToFloat((short) i);
            if (Float.isNaN(want)) {
                // Java quiets signalling NaNs, the vector conversion keeps the payload: both are NaN.
                assertThat(got[i]).as("fp16 bits %04x", i).isNaN();
            } else {
                assertThat(Float.floatToRawIntBits(got[i])).as("fp16 bits %04x", i).isEqualTo(Float.floatToRawIntBits(want));
            }
        }
    }

    /** (rows, cols) for row-wise operations. */
    private static final int[][] ROW_SHAPES = {{1, 1}, {3, 7}, {5, 33}, {2, 4099}, {40, 1000}};

    static Stream<Arguments> rowOpCases() {
        List<Arguments> cases = new ArrayList<>();
        BackendComparison.variants().forEach(variant -> {
            for (DType dtype : DType.values()) {
                for (int s = 0; s < ROW_SHAPES.length; s++) {
                    cases.add(Arguments.of(variant, dtype, s));
                }
            }
        });
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}, {1} weight, shape #{2}")
    @MethodSource("rowOpCases")
    void rmsNormMatchesReference(Variant variant, DType dtype, int shapeIndex) {
        int rows = ROW_SHAPES[shapeIndex][0];
        int cols = ROW_SHAPES[shapeIndex][1];
        SplittableRandom random = new SplittableRandom(300 + shapeIndex);
        // Small rows (mean square ~3e-6, near eps) make a missing or misplaced eps visible.
        float[] x = random(random, rows * cols, shapeIndex % 2 == 0 ? 0.003 : 3);
        TensorData w = weight("norm", dtype, 1, cols, random(random, cols, 1.5), shapeIndex % 2 == 0 ? -1 : 2);
        Tensor want = ref.allocate(rows, cols);
        ref.rmsNorm(upload(ref, rows, cols, x), ref.loadWeight(w), 1e-5f, want);
        float[] wantValues = download(ref, want);

        CpuBackend cpu = cpu(variant);
        Tensor got = upload(cpu, rows, cols, nans(rows * cols));
        cpu.rmsNorm(upload(cpu, rows, cols, x), cpu.loadWeight(w), 1e-5f, got);
        assertClose("rmsNorm " + rows + "x" + cols + " " + dtype + " on " + variant, download(cpu, got), wantValues,
                rows * cols, PRODUCT_REL, PRODUCT_ABS * maxAbs(wantValues, wantValues.length));

        // In place (out = x) gives the same result.
        Tensor inPlace = upload(cpu, rows, cols, x);
        cpu.rmsNorm(inPlace, cpu.loadWeight(w), 1e-5f, inPlace);
        assertThat(download(cpu, inPlace)).containsExactly(download(cpu, got));
    }

    @ParameterizedTest(name = "{0}, shape #{1}")
    @MethodSource("variantsAndShapes")
    void addIsExactIncludingInPlace(Variant variant, int shapeIndex) {
        int rows = ROW_SHAPES[shapeIndex][0];
        int cols = ROW_SHAPES[shapeIndex][1];
        SplittableRandom random = new SplittableRandom(400 + shapeIndex);
        float[] a = random(random, rows * cols, 2);
        float[] b = random(random, rows * cols, 2);
        Tensor want = ref.allocate(rows, cols);
        ref.add(upload(ref, rows, cols, a), upload(ref, rows, cols, b), want);
        CpuBackend cpu = cpu(variant);
        Tensor as = upload(cpu, rows, cols, a);
        Tensor got = upload(cpu, rows, cols, nans(rows * cols));
        cpu.add(as, upload(cpu, rows, cols, b), got);
        assertThat(download(cpu, got)).containsExactly(download(ref, want));
        cpu.add(as, upload(cpu, rows, cols, b), as);
        assertThat(download(cpu, as)).containsExactly(download(ref, want));
    }

    static Stream<Arguments> variantsAndShapes() {
        return BackendComparison.variants().flatMap(v -> Stream.of(0, 1, 2, 3, 4).map(s -> Arguments.of(v, s)));
    }

    @ParameterizedTest(name = "{0}, shape #{1}")
    @MethodSource("variantsAndShapes")
    void swigluMatchesReference(Variant variant, int shapeIndex) {
        int rows = ROW_SHAPES[shapeIndex][0];
        int inter = ROW_SHAPES[shapeIndex][1];
        SplittableRandom random = new SplittableRandom(500 + shapeIndex);
        float[] gateUp = random(random, rows * 2 * inter, 6);
        Tensor want = ref.allocate(rows, inter);
        ref.swiglu(upload(ref, rows, 2 * inter, gateUp), want);
        float[] wantValues = download(ref, want);
        CpuBackend cpu = cpu(variant);
        Tensor got = upload(cpu, rows, inter, nans(rows * inter));
        cpu.swiglu(upload(cpu, rows, 2 * inter, gateUp), got);
        assertClose("swiglu " + rows + "x" + inter + " on " + variant, download(cpu, got), wantValues, rows * inter,
                ELEMENTWISE_REL, ELEMENTWISE_ABS * maxAbs(wantValues, wantValues.length));
    }

    /** (rows, numHeads rotated, extra heads left alone, headDim). */
    private static final int[][] ROPE_SHAPES = {{1, 1, 0, 2}, {3, 2, 1, 8}, {5, 6, 2, 64}, {4, 3, 1, 128}, {33, 12, 4, 36}};

    static Stream<Arguments> ropeCases() {
        return BackendComparison.variants().flatMap(v -> Stream.of(0, 1, 2, 3, 4).map(s -> Arguments.of(v, s)));
    }

    @ParameterizedTest(name = "{0}, shape #{1}")
    @MethodSource("ropeCases")
    void ropeMatchesReferenceAndLeavesOtherColumnsAlone(Variant variant, int shapeIndex) {
        int[] shape = ROPE_SHAPES[shapeIndex];
        int rows = shape[0];
        int heads = shape[1];
        int headDim = shape[3];
        int cols = (heads + shape[2]) * headDim;
        SplittableRandom random = new SplittableRandom(600 + shapeIndex);
        float[] x = random(random, rows * cols, 2);
        int[] positions = new int[rows];
        for (int r = 0; r < rows; r++) {
            positions[r] = random.nextInt(5000);
        }
        float[] invFreq = new float[headDim / 2];
        for (int i = 0; i < invFreq.length; i++) {
            invFreq[i] = (float) Math.pow(500000, -2.0 * i / headDim);
        }
        RopeTable table = new RopeTable(invFreq, shapeIndex == 2 ? 1.2f : 1f);
        Tensor want = upload(ref, rows, cols, x);
        ref.rope(want, positions, table, heads, headDim);
        float[] wantValues = download(ref, want);
        CpuBackend cpu = cpu(variant);
        Tensor got = upload(cpu, rows, cols, x);
        cpu.rope(got, positions, table, heads, headDim);
        float[] gotValues = download(cpu, got);
        assertClose("rope " + rows + "x" + cols + " on " + variant, gotValues, wantValues, rows * cols,
                ELEMENTWISE_REL, ELEMENTWISE_ABS * maxAbs(wantValues, wantValues.length));
        for (int r = 0; r < rows; r++) {
            for (int c = heads * headDim; c < cols; c++) {
                assertThat(gotValues[r * cols + c]).isEqualTo(x[r * cols + c]);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("ai.punica.backend.BackendComparison#variants")
    void gatherRowsCopiesTheChosenRows(Variant variant) {
        SplittableRandom random = new SplittableRandom(700);
        float[] x = random(random, 6 * 19, 1);
        int[] rows = {5, 0, 5, 2};
        Tensor want = ref.allocate(4, 19);
        ref.gatherRows(upload(ref, 6, 19, x), rows, want);
        CpuBackend cpu = cpu(variant);
        Tensor got = upload(cpu, 4, 19, nans(4 * 19));
        cpu.gatherRows(upload(cpu, 6, 19, x), rows, got);
        assertThat(download(cpu, got)).containsExactly(download(ref, want));
    }

    @Test
    void firstRowsViewSharesStorageAndLimitsTheOperation() {
        CpuBackend cpu = cpu(BackendComparison.variants().findFirst().orElseThrow());
        SplittableRandom random = new SplittableRandom(800);
        float[] x = random(random, 8 * 16, 1);
        Tensor full = upload(cpu, 8, 16, x);
        Tensor out = upload(cpu, 8, 16, nans(8 * 16));
        cpu.add(full.firstRows(3), full.firstRows(3), out.firstRows(3));
        float[] got = download(cpu, out);
        for (int i = 0; i < 8 * 16; i++) {
            if (i < 3 * 16) {
                assertThat(got[i]).isEqualTo(2 * x[i]);
            } else {
                assertThat(got[i]).isNaN();
            }
        }
        assertThat(download(cpu, full.firstRows(2))).containsExactly(java.util.Arrays.copyOf(x, 32));
    }
}
