package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.CudaSgmvTest.fill;
import static ai.punica.backend.cuda.CudaSgmvTest.iota;
import static ai.punica.backend.cuda.GpuChecks.assertBitIdentical;
import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The tensor-core SGMV kernels (sgmv_tc.cu) against {@link ReferenceBackend} and against the CUDA-core kernels
 * (sgmv.cu) on seeded random bf16 data, at every shape class: ragged segments (1 to 2048 rows, across the
 * 64-row tile boundary), ranks 4 to 64 mixed in one call (5 and 12: B rows not 16-byte aligned), empty segments,
 * segments without an adapter, in/out 4096/4096, 4096/11008 (into the gate|up row at a column offset),
 * 11008/4096 and odd sizes (1000 → 999 at column 3, 2003 → 72: unaligned x rows, 72 → 72). Each case runs the
 * tensor-core path ({@code sgmvTcMinRows = 1}) twice on the same buffers with v poisoned (NaN) before each run,
 * then the CUDA-core path ({@code sgmvTcMinRows = 0}), each path on a backend of its own ({@link #gpuWith}: CUDA
 * options are fixed when a backend starts) with the same data:
 * <ul>
 *   <li>shrink and expand each within ‖gpu − ref‖/‖ref‖ ≤ 1e-2 of the reference (the expand from the GPU's own v);
 *   <li>the two tensor-core runs bit-identical (the split-K reduction adds in a fixed order);
 *   <li>y bit-identical where no adapter applies; the launch counter says which path ran.
 * </ul>
 * A mixed step (decode rows beside a prefill chunk) at the default threshold runs both kernels in one call.
 * A failure prints where the error is: the worst element, the error per segment, and which rows mod 16 and
 * columns mod 16 hold the bad elements (a wrong mma fragment layout shows as a pattern there). Prints
 * "CHECK sgmv-tc ..." lines. The grouped ops (q|k|v, gate|up) go through {@link CudaSgmvGroupTest}'s check with
 * the tensor-core path on; {@code matmulLora} through its side-stream test.
 */
@Tag("gpu")
class CudaSgmvTensorCoreTest extends GpuBackendTest {
    static final double TOL = 1e-2;

    /** v and y of one path: the defined part of v (the rest zeroed) and all of y. */
    record Result(float[] v, float[] y) {
    }

    /** A case's adapters and x, v, y on one backend. */
    record OnDevice(CudaBackend gpu, LoraWeights w, Tensor x, Tensor v, Tensor y) {
        /** Slot s gets adapter (a[s], b[s]) with {@code like}'s rank and scale; none where a[s] is null. */
        static OnDevice load(CudaBackend gpu, TensorData[] a, TensorData[] b, LoraWeights like, float[] x, int rows,
                             int in, int vCols, int yCols) {
            LoraWeights w = LoraWeights.empty(a.length);
            for (int s = 0; s < a.length; s++) {
                if (a[s] != null) {
                    w.a()[s] = gpu.loadWeight(a[s]);
                    w.b()[s] = gpu.loadWeight(b[s]);
                    w.rank()[s] = like.rank()[s];
                    w.scale()[s] = like.scale()[s];
                }
            }
            OnDevice d = new OnDevice(gpu, w, gpu.allocate(rows, in), gpu.allocate(rows, vCols),
                    gpu.allocate(rows, yCols));
            gpu.upload(x, d.x);
            return d;
        }

        void free() {
            for (int s = 0; s < w.slots(); s++) {
                if (w.a()[s] != null) {
                    gpu.free(w.a()[s]);
                    gpu.free(w.b()[s]);
                }
            }
            for (Tensor t : new Tensor[] {x, v, y}) {
                gpu.free(t);
            }
        }
    }

    /**
     * Runs the case on both paths and checks them as the class says; {@code tensorCores} is whether the
     * dispatch must take the tensor-core kernels with {@code sgmvTcMinRows = 1}.
     */
    void check(CudaSgmvTest.Case c, long seed, boolean tensorCores) {
        check(c, seed, tensorCores, 1);
    }

    /** {@link #check(CudaSgmvTest.Case, long, boolean)} with the tensor-core runs at {@code sgmvTcMinRows = tcMinRows}. */
    void check(CudaSgmvTest.Case c, long seed, boolean tensorCores, int tcMinRows) {
        SplittableRandom rng = new SplittableRandom(seed);
        int slots = c.slotRanks().length;
        TensorData[] as = new TensorData[slots];
        TensorData[] bs = new TensorData[slots];
        LoraWeights rW = LoraWeights.empty(slots);
        for (int s = 0; s < slots; s++) {
            int rank = c.slotRanks()[s];
            if (rank == 0) {
                continue;
            }
            as[s] = TensorData.of("A" + s, DType.BF16, rank, c.in(), random(rng, rank * c.in(), 0.05));
            bs[s] = TensorData.of("B" + s, DType.BF16, c.out(), rank, random(rng, c.out() * rank, 0.1));
            rW.a()[s] = ref.loadWeight(as[s]);
            rW.b()[s] = ref.loadWeight(bs[s]);
            rW.rank()[s] = rank;
            rW.scale()[s] = (float) (16.0 / rank);
        }
        int[] starts = new int[c.segLens().length + 1];
        for (int i = 0; i < c.segLens().length; i++) {
            starts[i + 1] = starts[i] + c.segLens()[i];
        }
        int rows = starts[c.segLens().length];
        Segments segments = new Segments(starts, c.segSlots());
        float[] xv = random(rng, rows * c.in(), 1);
        float[] y0 = random(rng, rows * c.yCols(), 0.5);
        float[] poison = new float[rows * c.vCols()];
        Arrays.fill(poison, Float.NaN);
        Tensor rx = ref.allocate(rows, c.in());
        Tensor rv = ref.allocate(rows, c.vCols());
        Tensor ry = ref.allocate(rows, c.yCols());
        ref.upload(xv, rx);
        ref.upload(poison, rv);
        ref.sgmvShrink(rx, rW, segments, rv);
        float[] refV = definedOnly(download(ref, rv), c, starts);
        String what = c.name() + " [" + SgmvTiles.tensorCoreCount(rows, slots) + " tc tiles]";
        // Names the case before any launch: a kernel that faults (a sticky CUDA error) fails the next call.
        System.out.printf("CHECK sgmv-tc start %s (tc runs at sgmvTcMinRows %d)%n", what, tcMinRows);

        Result first = null;
        OnDevice d = null;
        for (int run = 0; run < 3; run++) {
            boolean tc = run < 2;
            if (run != 1) {
                // Runs 0 and 1 on the tensor-core backend's buffers, run 2 on the CUDA-core backend's.
                if (d != null) {
                    d.free();
                }
                d = OnDevice.load(gpuWith(o -> o.sgmvTcMinRows(tc ? tcMinRows : 0)), as, bs, rW, xv, rows, c.in(),
                        c.vCols(), c.yCols());
            }
            CudaBackend gpu = d.gpu();
            String path = tc ? "tc run " + run : "cuda cores";
            long launches = gpu.sgmvTensorCoreLaunches();
            gpu.upload(poison, d.v());
            gpu.upload(y0, d.y());
            gpu.sgmvShrink(d.x(), d.w(), segments, d.v());
            float[] v = definedOnly(download(gpu, d.v()), c, starts);
            compare("shrink " + path + " " + what, v, refV, rows, c.vCols(), starts, TOL);

            // The reference expands the GPU's v, so the expand check sees only the expand kernel's error.
            ref.upload(download(gpu, d.v()), rv);
            ref.upload(y0, ry);
            ref.sgmvExpand(rv, rW, segments, ry, c.yCol());
            gpu.sgmvExpand(d.v(), d.w(), segments, d.y(), c.yCol());
            float[] y = download(gpu, d.y());
            float[] yRef = download(ref, ry);
            compare("expand " + path + " " + what + " (added part)", GpuChecks.added(y, y0), GpuChecks.added(yRef, y0),
                    rows, c.yCols(), starts, 2 * TOL);
            checkUntouched(c, starts, y, y0);
            long ran = gpu.sgmvTensorCoreLaunches() - launches;
            System.out.printf("CHECK sgmv-tc %-90s %d tensor-core launches (expected %d) %s%n", path + " " + what, ran,
                    tc && tensorCores ? 2 : 0, ran == (tc && tensorCores ? 2 : 0) ? "ok" : "FAIL");
            assertThat(ran).as("%s: tensor-core launches", what).isEqualTo(tc && tensorCores ? 2 : 0);
            if (run == 0) {
                first = new Result(v, y);
            } else if (run == 1) {
                assertBitIdentical(c.name() + ": tc shrink run 1 equals run 0 bit for bit", v, first.v());
                assertBitIdentical(c.name() + ": tc expand run 1 equals run 0 bit for bit", y, first.y());
                System.out.printf("CHECK sgmv-tc %-90s 2 runs bit-identical ok%n", what);
            } else {
                double dv = relativeError(first.v(), v);
                System.out.printf("CHECK sgmv-tc %-90s tc vs cuda-core shrink relErr %.2e%n", what, dv);
            }
        }
        d.free();
    }

    /**
     * Prints the CHECK line of {@code got} against {@code want} ([rows, cols]) and, above the tolerance, where
     * the error lies; then asserts the tolerance.
     */
    static void compare(String what, float[] got, float[] want, int rows, int cols, int[] starts, double tol) {
        double err = relativeError(got, want);
        System.out.printf("CHECK sgmv-tc %-90s relErr %.2e (tol %.0e) %s%n", what, err, tol, err <= tol ? "ok" : "FAIL");
        if (!(err <= tol)) {
            System.out.println(explain(got, want, rows, cols, starts));
        }
        assertThat(err).as(what + ": ‖gpu − ref‖/‖ref‖").isLessThanOrEqualTo(tol);
    }

    /** Where got and want differ: non-finite values, the worst element, per-segment error, rows/columns mod 16. */
    static String explain(float[] got, float[] want, int rows, int cols, int[] starts) {
        StringBuilder sb = new StringBuilder("  DIAG");
        double sq = 0;
        for (float w : want) {
            sq += (double) w * w;
        }
        double rms = Math.sqrt(sq / Math.max(1, want.length));
        int nonFinite = 0;
        int firstNonFinite = -1;
        int worst = 0;
        double worstDiff = -1;
        int[] badRowMod = new int[16];
        int[] badColMod = new int[16];
        int bad = 0;
        for (int i = 0; i < rows * cols; i++) {
            if (!Float.isFinite(got[i])) {
                nonFinite++;
                if (firstNonFinite < 0) {
                    firstNonFinite = i;
                }
                continue;
            }
            double d = Math.abs(got[i] - want[i]);
            if (d > worstDiff) {
                worstDiff = d;
                worst = i;
            }
            if (d > 0.05 * rms) {
                bad++;
                badRowMod[(i / cols) % 16]++;
                badColMod[(i % cols) % 16]++;
            }
        }
        sb.append(String.format(" rms(want) %.3g; %d non-finite", rms, nonFinite));
        if (firstNonFinite >= 0) {
            sb.append(String.format(" (first at [%d, %d])", firstNonFinite / cols, firstNonFinite % cols));
        }
        sb.append(String.format("; worst [%d, %d] got %g want %g; %d elements off by > 5%% of rms%n", worst / cols,
                worst % cols, got[worst], want[worst], bad));
        sb.append("  DIAG bad elements by row mod 16 ").append(Arrays.toString(badRowMod)).append('\n');
        sb.append("  DIAG bad elements by col mod 16 ").append(Arrays.toString(badColMod)).append('\n');
        sb.append("  DIAG relErr per segment:");
        for (int i = 0; i + 1 < starts.length; i++) {
            int from = starts[i] * cols;
            int n = (starts[i + 1] - starts[i]) * cols;
            sb.append(String.format(" %d:[%d rows] %.2e", i, starts[i + 1] - starts[i],
                    n == 0 ? 0.0 : relativeError(got, want, from, n)));
        }
        return sb.toString();
    }

    /** v with every element outside the contract's defined part (columns [0, rank) of adapted rows) set to 0. */
    static float[] definedOnly(float[] v, CudaSgmvTest.Case c, int[] starts) {
        float[] out = new float[v.length];
        for (int i = 0; i < c.segLens().length; i++) {
            int slot = c.segSlots()[i];
            if (slot < 0 || c.slotRanks()[slot] == 0) {
                continue;
            }
            for (int r = starts[i]; r < starts[i + 1]; r++) {
                System.arraycopy(v, r * c.vCols(), out, r * c.vCols(), c.slotRanks()[slot]);
            }
        }
        return out;
    }

    /** y keeps its bits outside [yCol, yCol + out) and on rows without an adapter. */
    static void checkUntouched(CudaSgmvTest.Case c, int[] starts, float[] y, float[] y0) {
        for (int i = 0; i < c.segLens().length; i++) {
            int slot = c.segSlots()[i];
            boolean adapted = slot >= 0 && c.slotRanks()[slot] > 0;
            for (int r = starts[i]; r < starts[i + 1]; r++) {
                for (int col = 0; col < c.yCols(); col++) {
                    boolean inRange = col >= c.yCol() && col < c.yCol() + c.out();
                    int k = r * c.yCols() + col;
                    if ((!adapted || !inRange) && Float.floatToRawIntBits(y[k]) != Float.floatToRawIntBits(y0[k])) {
                        throw new AssertionError(c.name() + ": y[" + r + ", " + col + "] changed from " + y0[k]
                                + " to " + y[k] + " where no adapter applies");
                    }
                }
            }
        }
    }

    static float[] download(ai.punica.backend.Backend backend, Tensor t) {
        float[] out = new float[t.rows() * t.cols()];
        backend.download(t, out);
        return out;
    }

    @Test
    void prefillShapesOfTheBenchmarkMatchReference() {
        check(new CudaSgmvTest.Case("8 x 128 rows rank 16, 4096→4096", 4096, 4096, 16, 0, 4096, fill(8, 128), iota(8),
                fill(8, 16)), 1, true);
        check(new CudaSgmvTest.Case("1 x 1024 rows rank 16, 4096→11008 into gate|up at col 11008", 4096, 11008, 16,
                11008, 22016, new int[] {1024}, new int[] {0}, new int[] {16}), 2, true);
    }

    @Test
    void raggedSegmentsWithRanksFourToSixtyFourInOneCallMatchReference() {
        // Segments across the 64-row tile boundary (63, 64, 65, 130), 1-row and empty segments, one without an
        // adapter; ranks 4..64 with 5 and 12 (B rows not 16-byte aligned: element loads), v as wide as 64.
        check(new CudaSgmvTest.Case("ragged 1/63/64/65/0/1/130/7(-1)/0/200/1, ranks 4..64 mixed, 4096→4096", 4096,
                4096, 64, 0, 4096, new int[] {1, 63, 64, 65, 0, 1, 130, 7, 0, 200, 1},
                new int[] {0, 1, 2, 3, 4, 5, 6, -1, 7, 8, 9}, new int[] {4, 8, 12, 16, 24, 32, 40, 48, 64, 5}), 10, true);
        check(new CudaSgmvTest.Case("down_proj 11008→4096, segments 129/1/70, ranks 32/4/64", 11008, 4096, 64, 0,
                4096, new int[] {129, 1, 70}, new int[] {0, 1, 2}, new int[] {32, 4, 64}), 11, true);
        check(new CudaSgmvTest.Case("gate 4096→11008 at col 0 of 22016, segments 100/3/250, ranks 16/64/8", 4096,
                11008, 64, 0, 22016, new int[] {100, 3, 250}, new int[] {2, 0, 1}, new int[] {64, 8, 16}), 12, true);
    }

    @Test
    void longSegmentsMatchReference() {
        check(new CudaSgmvTest.Case("long 2048 rows + 37 rows, ranks 16/8, 4096→4096", 4096, 4096, 16, 0, 4096,
                new int[] {2048, 37}, new int[] {1, 0}, new int[] {8, 16}), 20, true);
    }

    @Test
    void oddSizesMatchReference() {
        check(new CudaSgmvTest.Case("odd 1000→999 at col 3, ranks 5/12, segments 40/1/77", 1000, 999, 12, 3, 1010,
                new int[] {40, 1, 77}, new int[] {0, 1, 2}, new int[] {5, 12, 12}), 30, true);
        check(new CudaSgmvTest.Case("odd 2003→72 (unaligned x rows), ranks 12/64, segments 65/20", 2003, 72, 64, 0,
                72, new int[] {65, 20}, new int[] {1, 0}, new int[] {12, 64}), 31, true);
        check(new CudaSgmvTest.Case("tiny 72→72 (one split), ranks 4/12, segments 13/1/30(-1)", 72, 72, 16, 0, 72,
                new int[] {13, 1, 30}, new int[] {0, 1, -1}, new int[] {4, 12}), 32, true);
    }

    @Test
    void theDispatchKeepsDecodeStepsAndLargeRanksOnCudaCores() {
        // One-row segments with a slot each (a decode step): the decode kernels, whatever the threshold.
        check(new CudaSgmvTest.Case("decode b32 rank 16 (stays on cuda cores)", 4096, 4096, 16, 0, 4096, fill(32, 1),
                iota(32), fill(32, 16)), 40, false);
        // A rank above 64 anywhere in the step: the CUDA-core kernels for the whole call.
        check(new CudaSgmvTest.Case("rank 128 beside rank 16 (stays on cuda cores)", 4096, 1024, 128, 0, 1024,
                new int[] {100, 100}, new int[] {0, 1}, new int[] {16, 128}), 41, false);
        // The default threshold: segments of at least that many rows take tensor cores, shorter ones do not.
        CudaBackend byDefault = gpuWith(o -> o.sgmvTcMinRows(CudaOptions.SGMV_TC_MIN_ROWS));
        assertThat(takesTensorCores(byDefault, fill(8, 128), iota(8), 8)).as("8 x 128 rows at the default threshold")
                .isTrue();
        assertThat(takesTensorCores(byDefault, new int[] {1, 1, 1, 1, 1, 1, 1, 60}, iota(8), 8))
                .as("7 one-row segments and one of 60: the 60 rows on tensor cores").isTrue();
        assertThat(takesTensorCores(byDefault, new int[] {1, 2, 15, 1, 3, 15, 1, 9}, iota(8), 8))
                .as("segments of 1 to 15 rows: all below the threshold").isFalse();
        assertThat(takesTensorCores(gpuWith(o -> o.sgmvTcMinRows(0)), fill(8, 128), iota(8), 8))
                .as("8 x 128 rows with sgmvTcMinRows = 0").isFalse();
        System.out.println("CHECK sgmv-tc dispatch by rows per segment (default " + CudaOptions.SGMV_TC_MIN_ROWS
                + ", 0 = off) ok");
    }

    @Test
    void aMixedStepRunsItsLongSegmentsOnTensorCoresAndTheRestOnCudaCores() {
        // 32 decode rows of distinct adapters and a 256-row prefill chunk at the default threshold: both kernels
        // in one call, each over its own segments.
        int[] lens = new int[33];
        int[] ranks = new int[33];
        int[] choices = {8, 16, 64, 4, 12};
        for (int i = 0; i < 33; i++) {
            lens[i] = i == 20 ? 256 : 1;
            ranks[i] = choices[i % choices.length];
        }
        check(new CudaSgmvTest.Case("mixed step: 32 decode rows + 256-row prefill at slot 20, ranks 4..64, 4096→4096",
                4096, 4096, 64, 0, 4096, lens, iota(33), ranks), 45, true, CudaOptions.SGMV_TC_MIN_ROWS);
        check(new CudaSgmvTest.Case("mixed step: 5 decode rows + 100-row chunk, 11008→4096", 11008, 4096, 64, 0,
                4096, new int[] {1, 1, 100, 1, 1, 1}, iota(6), new int[] {16, 64, 32, 8, 4, 16}), 46, true,
                CudaOptions.SGMV_TC_MIN_ROWS);
    }

    /** Whether a rank-16 shrink of these segments ran on tensor cores on {@code gpu}. */
    private static boolean takesTensorCores(CudaBackend gpu, int[] segLens, int[] segSlots, int slots) {
        SplittableRandom rng = new SplittableRandom(50);
        int[] starts = new int[segLens.length + 1];
        for (int i = 0; i < segLens.length; i++) {
            starts[i + 1] = starts[i] + segLens[i];
        }
        int rows = starts[segLens.length];
        LoraWeights w = LoraWeights.empty(slots);
        for (int s = 0; s < slots; s++) {
            w.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, 16, 256, random(rng, 16 * 256, 0.05)));
            w.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, 256, 16, random(rng, 256 * 16, 0.1)));
            w.rank()[s] = 16;
            w.scale()[s] = 1f;
        }
        Tensor x = gpu.allocate(rows, 256);
        Tensor v = gpu.allocate(rows, 16);
        gpu.upload(random(rng, rows * 256, 1), x);
        long before = gpu.sgmvTensorCoreLaunches();
        gpu.sgmvShrink(x, w, new Segments(starts, segSlots), v);
        boolean took = gpu.sgmvTensorCoreLaunches() > before;
        for (int s = 0; s < slots; s++) {
            gpu.free(w.a()[s]);
            gpu.free(w.b()[s]);
        }
        gpu.free(x);
        gpu.free(v);
        return took;
    }

    @Test
    void groupedProjectionsOnTensorCoresMatchReference() {
        CudaBackend gpu = gpuWith(o -> o.sgmvTcMinRows(1));
        CudaSgmvGroupTest group = new CudaSgmvGroupTest();
        SplittableRandom rng = new SplittableRandom(60);
        long before = gpu.sgmvTensorCoreLaunches();
        int[] lens = {128, 1, 300, 0, 64, 65};
        int[] slots = {0, 1, 2, 3, -1, 4};
        group.check(new CudaSgmvGroupTest.GroupCase("tc q|k|v segments 128/1/300/0/64(-1)/65, mixed ranks",
                4096, CudaSgmvGroupTest.QKV_OUTS, 0, lens, slots, CudaSgmvGroupTest.mixedRanks(3, 5, rng), 64, 0), 61, gpu);
        group.check(new CudaSgmvGroupTest.GroupCase("tc gate|up segments 128/1/300/0/64(-1)/65, mixed ranks",
                4096, CudaSgmvGroupTest.GATE_UP_OUTS, 0, lens, slots, CudaSgmvGroupTest.mixedRanks(2, 5, rng), 64, 0), 62, gpu);
        long ran = gpu.sgmvTensorCoreLaunches() - before;
        System.out.printf("CHECK sgmv-tc grouped ops: %d tensor-core launches %s%n", ran, ran > 0 ? "ok" : "FAIL");
        assertThat(ran).as("tensor-core launches of the grouped checks").isPositive();
    }

    @Test
    void matmulLoraOfAPrefillChunkOnTensorCoresMatchesReference() {
        // q|k|v-like group (1024 → 512|128|128) over a prefill chunk of 200 + 100 rows beside a decode row, the
        // shrink on the side stream; the whole projection against the reference's GEMM + shrink + expand.
        CudaBackend gpu = gpuWith(o -> o.sgmvTcMinRows(CudaOptions.SGMV_TC_MIN_ROWS).loraOverlap(true));
        SplittableRandom rng = new SplittableRandom(80);
        int in = 1024;
        int[] outs = {512, 128, 128};
        int total = 768;
        CudaSgmvGroupTest.LoadedGroup group = CudaSgmvGroupTest.loadGroup(gpu, rng, in, outs,
                new int[][] {{16, 64, 8}, {16, 0, 12}, {4, 64, 0}});
        Segments seg = CudaSgmvGroupTest.segments(new int[] {200, 1, 100}, new int[] {0, 2, 1});
        int rows = 301;
        int[] cols = CudaSgmvGroupTest.columns(outs);
        float[] wv = random(rng, total * in, 0.02);
        float[] xv = random(rng, rows * in, 1);
        Tensor gw = gpu.loadWeight(TensorData.of("w", DType.BF16, total, in, wv));
        Tensor rw = ref.loadWeight(TensorData.of("w", DType.BF16, total, in, wv));
        Tensor gx = gpu.allocate(rows, in);
        Tensor gv = gpu.allocate(rows, 3 * 64);
        Tensor gy = gpu.allocate(rows, total);
        Tensor rx = ref.allocate(rows, in);
        Tensor rv = ref.allocate(rows, 3 * 64);
        Tensor ry = ref.allocate(rows, total);
        gpu.upload(xv, gx);
        ref.upload(xv, rx);
        long before = gpu.sgmvTensorCoreLaunches();
        gpu.matmulLora(gx, gw, null, gy, group.gpu(), seg, gv, cols);
        long ran = gpu.sgmvTensorCoreLaunches() - before;
        ref.matmulLora(rx, rw, null, ry, group.ref(), seg, rv, cols);
        int[] starts = {0, 200, 201, 301};
        compare("matmulLora q|k|v-like 1024→512|128|128, 200/1/100 rows, overlapped", download(gpu, gy),
                download(ref, ry), rows, total, starts, TOL);
        System.out.printf("CHECK sgmv-tc matmulLora: %d tensor-core launches (expected 2) %s%n", ran,
                ran == 2 ? "ok" : "FAIL");
        assertThat(ran).as("tensor-core launches of matmulLora").isEqualTo(2);
        group.free();
        for (Tensor t : new Tensor[] {gw, gx, gv, gy}) {
            gpu.free(t);
        }
    }

    @Test
    void splitKShrinkOnTensorCoresReplaysBitIdenticallyInACudaGraph() {
        CudaBackend gpu = gpuWith(o -> o.sgmvTcMinRows(1));
        SplittableRandom rng = new SplittableRandom(70);
        int rows = 256;
        int in = 11008;
        int rank = 16;
        Tensor x = gpu.allocate(rows, in);
        Tensor v = gpu.allocate(rows, rank);
        gpu.upload(random(rng, rows * in, 1), x);
        LoraWeights w = LoraWeights.empty(2);
        for (int s = 0; s < 2; s++) {
            w.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, rank, in, random(rng, rank * in, 0.05)));
            w.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, 64, rank, random(rng, 64 * rank, 0.1)));
            w.rank()[s] = rank;
            w.scale()[s] = 1f;
        }
        Segments seg = new Segments(new int[] {0, 100, rows}, new int[] {1, 0});
        Runnable shrink = () -> gpu.sgmvShrink(x, w, seg, v);
        long before = gpu.sgmvTensorCoreLaunches();
        shrink.run();
        assertThat(gpu.sgmvTensorCoreLaunches()).as("the shrink ran on tensor cores").isGreaterThan(before);
        float[] eager = download(gpu, v);
        float[] poison = new float[rows * rank];
        Arrays.fill(poison, Float.NaN);
        try (CudaBackend.CudaGraph graph = gpu.capture(shrink)) {
            for (int replay = 0; replay < 5; replay++) {
                gpu.upload(poison, v);
                graph.launch();
                assertBitIdentical(String.format("tc shrink replay %d", replay), download(gpu, v), eager);
            }
        }
        System.out.println("CHECK sgmv-tc graph replay of a split-K tensor-core shrink x5 bit-identical ok");
        for (int s = 0; s < 2; s++) {
            gpu.free(w.a()[s]);
            gpu.free(w.b()[s]);
        }
        gpu.free(x);
        gpu.free(v);
    }
}
