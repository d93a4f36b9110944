package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.CudaFusedOpsTest.assertClose;
import static ai.punica.backend.cuda.CudaFusedOpsTest.distinctSlots;
import static ai.punica.backend.cuda.CudaFusedOpsTest.gpuActivation;
import static ai.punica.backend.cuda.CudaFusedOpsTest.plane;
import static ai.punica.backend.cuda.CudaFusedOpsTest.refActivation;
import static ai.punica.backend.cuda.CudaFusedOpsTest.values;
import static ai.punica.backend.cuda.GpuChecks.assertBitIdentical;
import static ai.punica.backend.cuda.GpuChecks.random;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The LoRA add-on kept apart for its consumer (issue 14 item 3): {@link CudaBackend#matmulLoraApart} (the GEMM
 * on the side stream, the add-on into its own buffer on the main stream) and the consumers that read it
 * ({@code add_rms_norm}, {@code swiglu}, {@code rope_append_kv} with their {@code lora} argument), on seeded
 * random bf16 data.
 *
 * <ul>
 *   <li>Each consumer with the add-on equals, bit for bit, the CUDA add of the add-on then the plain consumer
 *       (the same bf16 rounding of the sum, then the same arithmetic), and the {@link ReferenceBackend}'s
 *       defaults within 1e-2.</li>
 *   <li>{@code matmulLoraApart}: out and the add-on within 1e-2 of the reference's default (GEMM, zero, shrink,
 *       expand), every row of a segment without an adapter exactly zero in the add-on, out bit-identical to the
 *       plain GEMM, and out ⊕ add-on within 1e-2 of {@code matmulLora} in place; decode steps of 32 one-row
 *       segments (the fused cluster kernel), of 4 (shrink and expand), and prefill-sized segments (tensor-core
 *       SGMV), for q|k|v and for a single projection.</li>
 * </ul>
 * The class's backend has {@link CudaOptions#loraApart} on (off by default). Prints "CHECK" lines.
 */
@Tag("gpu")
class CudaLoraApartTest extends GpuBackendTest {
    static final double TOL = 1e-2;

    /** {@link #gpu} with the add-on apart (the helpers shared with CudaFusedOpsTest allocate on {@link #gpu}). */
    @BeforeAll
    static void apartBackend() {
        CudaBackend plain = gpu;
        gpu = new CudaBackend(plain.options().toBuilder().loraApart(true).build());
        plain.close();
        assertThat(gpu.loraApart()).isTrue();
    }

    @Test
    void consumersWithTheAddOnEqualTheAddThenThePlainOp() {
        SplittableRandom rng = new SplittableRandom(500);
        float eps = 1e-5f;
        for (int[] shape : new int[][] {{1, 4096}, {32, 4096}, {256, 4096}, {5, 1001}, {7, 72}}) {
            int rows = shape[0];
            int cols = shape[1];
            String what = "addRmsNorm+lora " + rows + "x" + cols;
            float[] x = random(rng, rows * cols, 2);
            float[] d = random(rng, rows * cols, 1);
            float[] l = random(rng, rows * cols, 0.3);
            TensorData weight = TensorData.of("norm", DType.BF16, 1, cols, random(rng, cols, 1.5));
            Tensor gw = gpu.loadWeight(weight);
            Tensor gx = gpuActivation(rows, cols, x);
            Tensor gd = gpuActivation(rows, cols, d);
            Tensor gl = gpuActivation(rows, cols, l);
            Tensor gout = gpu.allocate(rows, cols);
            gpu.addRmsNorm(gx, gd, gl, gw, eps, gout);
            Tensor ux = gpuActivation(rows, cols, x);
            Tensor ud = gpuActivation(rows, cols, d);
            Tensor uout = gpu.allocate(rows, cols);
            gpu.add(ud, gl, ud);
            gpu.addRmsNorm(ux, ud, gw, eps, uout);
            Tensor rx = refActivation(rows, cols, x);
            Tensor rout = ref.allocate(rows, cols);
            ref.addRmsNorm(rx, refActivation(rows, cols, d), refActivation(rows, cols, l), ref.loadWeight(weight), eps,
                    rout);
            assertBitIdentical(what + " x", values(gpu, gx), values(gpu, ux));
            assertBitIdentical(what + " out", values(gpu, gout), values(gpu, uout));
            assertClose(what + " out vs reference", values(gpu, gout), values(ref, rout), TOL);
            for (Tensor t : new Tensor[] {gw, gx, gd, gl, gout, ux, ud, uout}) {
                gpu.free(t);
            }
        }
        for (int[] shape : new int[][] {{1, 11008}, {64, 11008}, {3, 77}}) {
            int rows = shape[0];
            int inter = shape[1];
            String what = "swiglu+lora " + rows + "x" + inter;
            float[] gu = random(rng, rows * 2 * inter, 2);
            float[] l = random(rng, rows * 2 * inter, 0.5);
            Tensor ggu = gpuActivation(rows, 2 * inter, gu);
            Tensor gl = gpuActivation(rows, 2 * inter, l);
            Tensor gout = gpu.allocate(rows, inter);
            gpu.swiglu(ggu, gl, gout);
            Tensor ugu = gpuActivation(rows, 2 * inter, gu);
            Tensor uout = gpu.allocate(rows, inter);
            gpu.add(ugu, gl, ugu);
            gpu.swiglu(ugu, uout);
            Tensor rout = ref.allocate(rows, inter);
            ref.swiglu(refActivation(rows, 2 * inter, gu), refActivation(rows, 2 * inter, l), rout);
            assertBitIdentical(what, values(gpu, gout), values(gpu, uout));
            assertClose(what + " vs reference", values(gpu, gout), values(ref, rout), TOL);
            for (Tensor t : new Tensor[] {ggu, gl, gout, ugu, uout}) {
                gpu.free(t);
            }
        }
        // (rows, heads, KV heads, headDim): the vector path (128, 64) and the scalar one (72).
        long seed = 510;
        for (int[] shape : new int[][] {{1, 32, 8, 128}, {40, 32, 8, 128}, {9, 16, 16, 64}, {5, 4, 2, 72}}) {
            ropeAppendKvWithAddOn(shape[0], shape[1], shape[2], shape[3], seed++);
        }
    }

    private static void ropeAppendKvWithAddOn(int rows, int heads, int kvHeads, int hd, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        String what = "ropeAppendKv+lora " + rows + " rows, " + heads + "/" + kvHeads + " heads of " + hd;
        RopeTable table = CudaFusedOpsTest.SCALINGS[2].table(hd);
        int qCols = heads * hd;
        int kvCols = kvHeads * hd;
        int cols = qCols + 2 * kvCols;
        int pageSize = 16;
        int numPages = (2 * rows + pageSize - 1) / pageSize + 2;
        int[] slots = distinctSlots(rows, numPages * pageSize, seed);
        if (rows > 2) {
            slots[1] = -1; // a padding row: rotated, its add-on added, nothing appended
        }
        int[] positions = rng.ints(rows, 0, 8192).toArray();
        float[] qkv = random(rng, rows * cols, 2);
        float[] l = random(rng, rows * cols, 0.5);
        KvStorage apartKv = gpu.allocateKv(1, numPages, pageSize, kvHeads, hd);
        KvStorage plainKv = gpu.allocateKv(1, numPages, pageSize, kvHeads, hd);
        Tensor apart = gpuActivation(rows, cols, qkv);
        Tensor gl = gpuActivation(rows, cols, l);
        gpu.ropeAppendKv(apart, gl, positions, table, heads, kvHeads, hd, apartKv, 0, qCols, qCols + kvCols, slots);
        Tensor plain = gpuActivation(rows, cols, qkv);
        gpu.add(plain, gl, plain);
        gpu.ropeAppendKv(plain, positions, table, heads, kvHeads, hd, plainKv, 0, qCols, qCols + kvCols, slots);
        Tensor want = refActivation(rows, cols, qkv);
        ref.add(want, refActivation(rows, cols, l), want);
        ref.rope(want, positions, table, heads + kvHeads, hd);
        assertBitIdentical(what + " qkv", values(gpu, apart), values(gpu, plain));
        assertBitIdentical(what + " cached keys", plane(apartKv, 0, true), plane(plainKv, 0, true));
        assertBitIdentical(what + " cached values", plane(apartKv, 0, false), plane(plainKv, 0, false));
        assertClose(what + " qkv vs reference", values(gpu, apart), values(ref, want), TOL);
        for (Tensor t : new Tensor[] {apart, gl, plain}) {
            gpu.free(t);
        }
    }

    /** A projection group's case: input width, outputs side by side, segments (slot -1: no adapter). */
    record Case(String name, int in, int[] outs, int[] segLens, int[] segSlots) {
    }

    @Test
    void matmulLoraApartMatchesTheReferenceAndTheAddOnInPlace() {
        int[] decode32 = new int[32];
        int[] slots32 = new int[32];
        for (int i = 0; i < 32; i++) {
            decode32[i] = 1;
            slots32[i] = i % 11 == 5 ? -1 : i; // each adapter's rows are one segment
        }
        List<Case> cases = List.of(
                new Case("q|k|v decode 32 rows (fused kernel)", 1024, new int[] {1024, 256, 256}, decode32, slots32),
                new Case("o decode 32 rows (fused kernel)", 1024, new int[] {1024}, decode32, slots32),
                new Case("q|k|v decode 4 rows (shrink, expand)", 1024, new int[] {1024, 256, 256},
                        new int[] {1, 1, 1, 1}, new int[] {3, -1, 0, 7}),
                new Case("gate|up 64 + 64 + 20 rows (tensor-core SGMV)", 1024, new int[] {2816, 2816},
                        new int[] {64, 64, 20}, new int[] {2, 5, -1}));
        long seed = 600;
        for (Case c : cases) {
            check(c, seed++);
        }
    }

    private static void check(Case c, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int slots = 32;
        int rank = 16;
        int n = c.outs().length;
        int width = Arrays.stream(c.outs()).sum();
        List<LoraWeights> gGroup = new ArrayList<>();
        List<LoraWeights> rGroup = new ArrayList<>();
        List<Tensor> owned = new ArrayList<>();
        for (int m = 0; m < n; m++) {
            LoraWeights gW = LoraWeights.empty(slots);
            LoraWeights rW = LoraWeights.empty(slots);
            for (int s = 0; s < slots; s++) {
                if (m == 1 && s == 3) {
                    continue; // a slot absent in one projection of the group
                }
                int r = s % 2 == 0 ? rank : rank / 2;
                TensorData a = TensorData.of("A", DType.BF16, r, c.in(), random(rng, r * c.in(), 0.05));
                TensorData b = TensorData.of("B", DType.BF16, c.outs()[m], r, random(rng, c.outs()[m] * r, 0.1));
                gW.a()[s] = gpu.loadWeight(a);
                gW.b()[s] = gpu.loadWeight(b);
                owned.add(gW.a()[s]);
                owned.add(gW.b()[s]);
                rW.a()[s] = ref.loadWeight(a);
                rW.b()[s] = ref.loadWeight(b);
                gW.rank()[s] = rW.rank()[s] = r;
                gW.scale()[s] = rW.scale()[s] = 2f;
            }
            gGroup.add(gW);
            rGroup.add(rW);
        }
        int[] cols = new int[n];
        for (int m = 1; m < n; m++) {
            cols[m] = cols[m - 1] + c.outs()[m - 1];
        }
        int[] starts = new int[c.segLens().length + 1];
        for (int i = 0; i < c.segLens().length; i++) {
            starts[i + 1] = starts[i] + c.segLens()[i];
        }
        int rows = starts[c.segLens().length];
        Segments segments = new Segments(starts, c.segSlots());
        TensorData weight = TensorData.of("W", DType.BF16, width, c.in(), random(rng, width * c.in(), 0.03));
        float[] xv = random(rng, rows * c.in(), 1);
        int vCols = n * rank;

        Tensor gW = gpu.loadWeight(weight);
        Tensor gx = gpuActivation(rows, c.in(), xv);
        Tensor gv = gpu.allocate(rows, vCols);
        Tensor gOut = gpu.allocate(rows, width);
        Tensor gLora = gpuActivation(rows, width, random(rng, rows * width, 9)); // garbage: must be zeroed
        long fusedBefore = gpu.fusedLaunches();
        gpu.matmulLoraApart(gx, gW, null, gOut, gGroup, segments, gv, cols, gLora);
        long fused = gpu.fusedLaunches() - fusedBefore;
        Tensor plain = gpu.allocate(rows, width);
        gpu.matmul(gx, gW, null, plain);
        Tensor inPlace = gpu.allocate(rows, width);
        gpu.matmulLora(gx, gW, null, inPlace, gGroup, segments, gv, cols);

        Tensor rW = ref.loadWeight(weight);
        Tensor rOut = ref.allocate(rows, width);
        Tensor rLora = ref.allocate(rows, width);
        ref.matmulLoraApart(refActivation(rows, c.in(), xv), rW, null, rOut, rGroup, segments,
                ref.allocate(rows, vCols), cols, rLora);

        float[] out = values(gpu, gOut);
        float[] lora = values(gpu, gLora);
        String what = "matmulLoraApart " + c.name() + (fused > 0 ? " [fused]" : "");
        assertBitIdentical(what + " out = plain GEMM", out, values(gpu, plain));
        assertClose(what + " out vs reference", out, values(ref, rOut), TOL);
        assertClose(what + " add-on vs reference", lora, values(ref, rLora), TOL);
        for (int i = 0; i < c.segLens().length; i++) {
            if (c.segSlots()[i] >= 0) {
                continue;
            }
            for (int r = starts[i]; r < starts[i + 1]; r++) {
                for (int k = 0; k < width; k++) {
                    assertThat(lora[r * width + k]).as("%s: row %d has no adapter, column %d", what, r, k).isZero();
                }
            }
        }
        gpu.add(gOut, gLora, gOut);
        assertClose(what + " out + add-on vs matmulLora in place", values(gpu, gOut), values(gpu, inPlace), TOL);
        if (c.name().contains("fused")) {
            assertThat(fused).as(what + ": took the fused kernel").isPositive();
        }
        for (Tensor t : new Tensor[] {gW, gx, gv, gOut, gLora, plain, inPlace}) {
            gpu.free(t);
        }
        owned.forEach(gpu::free);
    }
}
