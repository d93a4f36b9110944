package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import ai.punica.model.ModelConfig;
import ai.punica.model.RopeScaling;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The fused CUDA kernels ({@code add_rms_norm}, {@code rope_append_kv}) against {@link ReferenceBackend}
 * and against the unfused CUDA kernels they replace, on seeded random bf16 data (never zeros).
 *
 * <p>Against the reference: ‖gpu − ref‖ / ‖ref‖ ≤ 1e-2 (bf16 storage, float32 accumulation); values
 * copied into the cache and slots nobody wrote must be exact. Against the unfused kernels (add then
 * rmsNorm, rope then appendKv): the fused kernels do the same float32 operations in the same order, so the
 * expected difference is none; x must match exactly, the rest within 1e-3, and each check prints how many
 * elements differ. Every check prints a "CHECK" line.
 */
@Tag("gpu")
class CudaFusedOpsTest extends GpuBackendTest {
    static final double TOL = 1e-2;
    static final double UNFUSED_TOL = 1e-3;

    // ---- helpers ----------------------------------------------------------------------------------

    static Tensor gpuActivation(int rows, int cols, float[] values) {
        Tensor t = gpu.allocate(rows, cols);
        gpu.upload(values, t);
        return t;
    }

    static Tensor refActivation(int rows, int cols, float[] values) {
        Tensor t = ref.allocate(rows, cols);
        ref.upload(values, t);
        return t;
    }

    static float[] values(Backend backend, Tensor t) {
        float[] out = new float[t.rows() * t.cols()];
        backend.download(t, out);
        return out;
    }

    static void assertClose(String what, float[] got, float[] want, double tol) {
        assertThat(got.length).as(what + ": length").isEqualTo(want.length);
        double err = relativeError(got, want);
        System.out.printf("CHECK %-78s relErr %.2e (tol %.0e) %s%n", what, err, tol, err <= tol ? "ok" : "FAIL");
        assertThat(err).as(what + ": ‖gpu − want‖/‖want‖").isLessThanOrEqualTo(tol);
    }

    /** Fused against unfused CUDA: prints how many elements differ; passes within {@code tol}. */
    static void assertSameAsUnfused(String what, float[] fused, float[] unfused, double tol) {
        int differ = 0;
        for (int i = 0; i < fused.length; i++) {
            if (Float.floatToRawIntBits(fused[i]) != Float.floatToRawIntBits(unfused[i])) {
                differ++;
            }
        }
        double err = relativeError(fused, unfused);
        System.out.printf("CHECK %-78s vs unfused: %d of %d differ, relErr %.2e (tol %.0e) %s%n", what, differ,
                fused.length, err, tol, err <= tol ? "ok" : "FAIL");
        assertThat(err).as(what + ": fused vs unfused").isLessThanOrEqualTo(tol);
    }

    /** One layer's key or value plane of a CUDA KV cache, [slots, kvCols], as floats. */
    static float[] plane(KvStorage kv, int layer, boolean keys) {
        CudaKvStorage c = (CudaKvStorage) kv;
        int slots = Math.toIntExact(c.slotsPerLayer());
        int kvCols = c.numKvHeads() * c.headDim();
        CudaTensor view = new CudaTensor(c.owner(), keys ? c.keys(layer) : c.values(layer), slots, kvCols, DType.BF16, null);
        float[] out = new float[slots * kvCols];
        gpu.download(view, out);
        return out;
    }

    /** {@code rows} distinct slots of {@code slotCount}, shuffled: neither contiguous nor ascending. */
    static int[] distinctSlots(int rows, int slotCount, long seed) {
        List<Integer> all = new ArrayList<>();
        for (int s = 0; s < slotCount; s++) {
            all.add(s);
        }
        Collections.shuffle(all, new Random(seed));
        return all.subList(0, rows).stream().mapToInt(Integer::intValue).toArray();
    }

    // ---- addRmsNorm -------------------------------------------------------------------------------

    /**
     * (rows, cols): tiny and odd widths (72, 1000: vector path; 1001, 36: scalar path), model widths
     * (4096, 5120, 8192), and 20000, past what add_rms_norm keeps in registers (re-read tail).
     */
    static final int[][] NORM_SHAPES = {
        {1, 64}, {300, 64}, {7, 72}, {33, 1000}, {5, 1001}, {2, 36}, {1, 4096}, {64, 4096}, {300, 4096},
        {1, 5120}, {17, 5120}, {300, 5120}, {3, 8192}, {4, 20000},
    };

    @Test
    void addRmsNormMatchesReferenceAndAddThenRmsNorm() {
        SplittableRandom rng = new SplittableRandom(100);
        for (int[] shape : NORM_SHAPES) {
            int rows = shape[0];
            int cols = shape[1];
            String what = "addRmsNorm " + rows + "x" + cols;
            float[] x = random(rng, rows * cols, 2);
            float[] delta = random(rng, rows * cols, 1);
            float[] w = random(rng, cols, 1.5);
            TensorData weight = TensorData.of("norm", DType.BF16, 1, cols, w);
            float eps = 1e-5f;

            Tensor gw = gpu.loadWeight(weight);
            Tensor gx = gpuActivation(rows, cols, x);
            Tensor gd = gpuActivation(rows, cols, delta);
            Tensor gout = gpu.allocate(rows, cols);
            gpu.addRmsNorm(gx, gd, gw, eps, gout);

            Tensor ux = gpuActivation(rows, cols, x);
            Tensor uout = gpu.allocate(rows, cols);
            gpu.add(ux, gd, ux);
            gpu.rmsNorm(ux, gw, eps, uout);

            Tensor rx = refActivation(rows, cols, x);
            Tensor rout = ref.allocate(rows, cols);
            ref.addRmsNorm(rx, refActivation(rows, cols, delta), ref.loadWeight(weight), eps, rout);

            float[] fusedX = values(gpu, gx);
            float[] fusedOut = values(gpu, gout);
            assertClose(what + " x (residual)", fusedX, values(ref, rx), TOL);
            assertClose(what + " out", fusedOut, values(ref, rout), TOL);
            assertSameAsUnfused(what + " x (residual)", fusedX, values(gpu, ux), 0);
            assertSameAsUnfused(what + " out", fusedOut, values(gpu, uout), UNFUSED_TOL);
            for (Tensor t : new Tensor[] {gw, gx, gd, gout, ux, uout}) {
                gpu.free(t);
            }
        }
    }

    // ---- ropeAppendKv -----------------------------------------------------------------------------

    /** A model config with only what ropeTable() reads filled in meaningfully. */
    static RopeTable ropeTable(int headDim, double theta, RopeScaling scaling, int maxPositions) {
        return new ModelConfig("llama", 1000, headDim * 4, 64, 1, 4, 4, headDim, maxPositions, 1e-5f, theta, scaling,
                false, false, false, 0, -1, List.of(), "bfloat16").ropeTable();
    }

    record Scaling(String name, double theta, RopeScaling scaling, int maxPositions) {
        RopeTable table(int headDim) {
            return ropeTable(headDim, theta, scaling, maxPositions);
        }
    }

    /** Every rope variant ModelConfig supports: default, linear, llama3 (Llama 3.1), yarn (attention factor ≠ 1). */
    static final Scaling[] SCALINGS = {
        new Scaling("default", 10000, null, 4096),
        new Scaling("linear x4", 10000, RopeScaling.linear(4.0), 16384),
        new Scaling("llama3 x8", 500000, RopeScaling.llama3(8.0, 1.0, 4.0, 8192), 131072),
        new Scaling("yarn x4", 1e6, new RopeScaling("yarn", 4.0, 0, 0, 32768, 32, 1, null, null, null, true), 131072),
    };

    /**
     * (rows, query heads, KV heads, headDim): Llama 3 8B (32/8 of 128), MHA 16/16 of 64, Qwen2 7B (28/4 of
     * 128), 12/2 of 64, and head sizes 72 and 36 that take the scalar path (headDim / 2 not a multiple of 8).
     */
    static final int[][] ROPE_SHAPES = {
        {1, 32, 8, 128}, {300, 32, 8, 128}, {7, 16, 16, 64}, {77, 28, 4, 128}, {129, 12, 2, 64}, {5, 4, 2, 72},
        {40, 6, 3, 36},
    };

    @Test
    void ropeAppendKvMatchesReferenceAndRopeThenAppendKvForEveryScaling() {
        long seed = 200;
        for (Scaling scaling : SCALINGS) {
            for (int[] shape : ROPE_SHAPES) {
                checkRopeAppendKv(scaling, shape[0], shape[1], shape[2], shape[3], seed++);
            }
        }
    }

    void checkRopeAppendKv(Scaling scaling, int rows, int heads, int kvHeads, int hd, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        String what = "ropeAppendKv " + scaling.name() + ", " + rows + " rows, " + heads + "/" + kvHeads + " heads of " + hd;
        RopeTable table = scaling.table(hd);
        int qCols = heads * hd;
        int kvCols = kvHeads * hd;
        int cols = qCols + 2 * kvCols;
        int pageSize = 16;
        int numPages = (3 * rows + pageSize - 1) / pageSize + 2;
        int slotCount = numPages * pageSize;
        int layers = 2;
        int layer = 1;

        float[] qkv = random(rng, rows * cols, 2);
        int[] positions = rng.ints(rows, 0, scaling.maxPositions()).toArray();
        positions[0] = 0;
        if (rows > 1) {
            positions[rows - 1] = scaling.maxPositions() - 1;
        }
        int[] slots = distinctSlots(rows, slotCount, seed);

        // Both caches start with random keys and values in every slot of every layer.
        float[] history = random(rng, slotCount * cols, 1);
        int[] everySlot = new int[slotCount];
        Arrays.setAll(everySlot, s -> s);
        Tensor hist = gpuActivation(slotCount, cols, history);
        KvStorage fusedKv = gpu.allocateKv(layers, numPages, pageSize, kvHeads, hd);
        KvStorage unfusedKv = gpu.allocateKv(layers, numPages, pageSize, kvHeads, hd);
        for (int l = 0; l < layers; l++) {
            gpu.appendKv(fusedKv, l, hist, qCols, qCols + kvCols, everySlot);
            gpu.appendKv(unfusedKv, l, hist, qCols, qCols + kvCols, everySlot);
        }
        gpu.free(hist);

        Tensor fused = gpuActivation(rows, cols, qkv);
        gpu.ropeAppendKv(fused, positions, table, heads, kvHeads, hd, fusedKv, layer, qCols, qCols + kvCols, slots);
        Tensor unfused = gpuActivation(rows, cols, qkv);
        gpu.rope(unfused, positions, table, heads + kvHeads, hd);
        gpu.appendKv(unfusedKv, layer, unfused, qCols, qCols + kvCols, slots);
        Tensor want = refActivation(rows, cols, qkv);
        ref.rope(want, positions, table, heads + kvHeads, hd);

        float[] got = values(gpu, fused);
        float[] wantValues = values(ref, want);
        float[] gotQ = new float[rows * qCols];
        float[] wantQ = new float[rows * qCols];
        float[] gotK = new float[rows * kvCols];
        float[] wantK = new float[rows * kvCols];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(got, r * cols, gotQ, r * qCols, qCols);
            System.arraycopy(wantValues, r * cols, wantQ, r * qCols, qCols);
            System.arraycopy(got, r * cols + qCols, gotK, r * kvCols, kvCols);
            System.arraycopy(wantValues, r * cols + qCols, wantK, r * kvCols, kvCols);
            for (int c = qCols + kvCols; c < cols; c++) {
                assertThat(got[r * cols + c]).as("%s: value column %d of row %d untouched", what, c, r)
                        .isEqualTo(qkv[r * cols + c]);
            }
        }
        assertClose(what + " q", gotQ, wantQ, TOL);
        assertClose(what + " k", gotK, wantK, TOL);
        assertSameAsUnfused(what + " qkv", got, values(gpu, unfused), UNFUSED_TOL);

        // The cache: appended slots hold the rotated key (as it sits in qkv) and the value; every other
        // slot, and the other layer, still hold the history.
        float[] keys = plane(fusedKv, layer, true);
        float[] vals = plane(fusedKv, layer, false);
        float[] expectKeys = new float[slotCount * kvCols];
        float[] expectVals = new float[slotCount * kvCols];
        for (int s = 0; s < slotCount; s++) {
            System.arraycopy(history, s * cols + qCols, expectKeys, s * kvCols, kvCols);
            System.arraycopy(history, s * cols + qCols + kvCols, expectVals, s * kvCols, kvCols);
        }
        float[] cachedK = new float[rows * kvCols];
        for (int r = 0; r < rows; r++) {
            System.arraycopy(got, r * cols + qCols, expectKeys, slots[r] * kvCols, kvCols);
            System.arraycopy(qkv, r * cols + qCols + kvCols, expectVals, slots[r] * kvCols, kvCols);
            System.arraycopy(keys, slots[r] * kvCols, cachedK, r * kvCols, kvCols);
        }
        assertClose(what + " cached k vs reference", cachedK, wantK, TOL);
        assertClose(what + " cache keys (all slots) vs rotated qkv", keys, expectKeys, 0);
        assertClose(what + " cache values (all slots)", vals, expectVals, 0);
        float[] otherLayer = plane(fusedKv, 0, true);
        float[] historyKeys = new float[slotCount * kvCols];
        for (int s = 0; s < slotCount; s++) {
            System.arraycopy(history, s * cols + qCols, historyKeys, s * kvCols, kvCols);
        }
        assertClose(what + " layer 0 keys untouched", otherLayer, historyKeys, 0);
        assertSameAsUnfused(what + " cache keys", keys, plane(unfusedKv, layer, true), UNFUSED_TOL);
        assertSameAsUnfused(what + " cache values", vals, plane(unfusedKv, layer, false), 0);

        gpu.free(fused);
        gpu.free(unfused);
        ref.free(want);
    }

    @Test
    void paddingRowsAreRotatedButNotAppended() {
        SplittableRandom rng = new SplittableRandom(300);
        int rows = 6;
        int heads = 8;
        int kvHeads = 2;
        int hd = 128;
        int qCols = heads * hd;
        int kvCols = kvHeads * hd;
        int cols = qCols + 2 * kvCols;
        RopeTable table = SCALINGS[2].table(hd);
        float[] qkv = random(rng, rows * cols, 2);
        int[] positions = rng.ints(rows, 0, 100_000).toArray();
        int[] slots = {5, -1, 40, 17, -1, 2};
        KvStorage fusedKv = gpu.allocateKv(1, 4, 16, kvHeads, hd);
        KvStorage unfusedKv = gpu.allocateKv(1, 4, 16, kvHeads, hd);
        Tensor fused = gpuActivation(rows, cols, qkv);
        gpu.ropeAppendKv(fused, positions, table, heads, kvHeads, hd, fusedKv, 0, qCols, qCols + kvCols, slots);
        Tensor unfused = gpuActivation(rows, cols, qkv);
        gpu.rope(unfused, positions, table, heads + kvHeads, hd);
        gpu.appendKv(unfusedKv, 0, unfused, qCols, qCols + kvCols, slots);
        assertSameAsUnfused("ropeAppendKv with padding rows (slot -1): qkv", values(gpu, fused), values(gpu, unfused),
                UNFUSED_TOL);
        assertSameAsUnfused("ropeAppendKv with padding rows (slot -1): keys", plane(fusedKv, 0, true),
                plane(unfusedKv, 0, true), UNFUSED_TOL);
        assertSameAsUnfused("ropeAppendKv with padding rows (slot -1): values", plane(fusedKv, 0, false),
                plane(unfusedKv, 0, false), 0);
        gpu.free(fused);
        gpu.free(unfused);
    }

    // ---- CUDA graphs ------------------------------------------------------------------------------

    @Test
    void capturedFusedOpsReplayTheDirectResult() {
        SplittableRandom rng = new SplittableRandom(400);
        int rows = 9;
        int hidden = 4096;
        int heads = 32;
        int kvHeads = 8;
        int hd = 128;
        int qCols = heads * hd;
        int kvCols = kvHeads * hd;
        int cols = qCols + 2 * kvCols;
        RopeTable table = SCALINGS[3].table(hd);
        float[] x0 = random(rng, rows * hidden, 2);
        float[] delta = random(rng, rows * hidden, 1);
        float[] qkv0 = random(rng, rows * cols, 2);
        int[] positions = rng.ints(rows, 0, 50_000).toArray();
        int[] slots = distinctSlots(rows, 64, 401);
        Tensor x = gpuActivation(rows, hidden, x0);
        Tensor d = gpuActivation(rows, hidden, delta);
        Tensor out = gpu.allocate(rows, hidden);
        Tensor qkv = gpuActivation(rows, cols, qkv0);
        Tensor w = gpu.loadWeight(TensorData.of("norm", DType.BF16, 1, hidden, random(rng, hidden, 1.5)));
        KvStorage kv = gpu.allocateKv(1, 4, 16, kvHeads, hd);
        Runnable step = () -> {
            gpu.ropeAppendKv(qkv, positions, table, heads, kvHeads, hd, kv, 0, qCols, qCols + kvCols, slots);
            gpu.addRmsNorm(x, d, w, 1e-5f, out);
        };
        step.run();
        float[] directQkv = values(gpu, qkv);
        float[] directX = values(gpu, x);
        float[] directOut = values(gpu, out);
        float[] directKeys = plane(kv, 0, true);

        gpu.upload(qkv0, qkv);
        gpu.upload(x0, x);
        gpu.upload(random(rng, rows * hidden, 1), out);
        gpu.synchronize();
        try (CudaBackend.CudaGraph graph = gpu.capture(step)) {
            graph.launch();
        }
        assertClose("graph replay of ropeAppendKv: qkv", values(gpu, qkv), directQkv, 0);
        assertClose("graph replay of ropeAppendKv: cache keys", plane(kv, 0, true), directKeys, 0);
        assertClose("graph replay of addRmsNorm: x", values(gpu, x), directX, 0);
        assertClose("graph replay of addRmsNorm: out", values(gpu, out), directOut, 0);
        for (Tensor t : new Tensor[] {x, d, out, qkv, w}) {
            gpu.free(t);
        }
    }
}
