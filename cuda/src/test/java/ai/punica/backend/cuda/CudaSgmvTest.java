package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.assertBitIdentical;
import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * SGMV shrink and expand of {@link CudaBackend} against {@link ReferenceBackend} on seeded random data
 * (never zeros, inputs rounded to bf16 so both see the same numbers), over the launch shapes that matter:
 * decode batches (one-row tiles, split-K shrink), prefill segments (full 8-row tiles, one split), odd and
 * large input sizes, ranks 4 to 64 and an odd one, slots without an adapter, expand at a column offset.
 * Every case runs 3 times on the same buffers with v poisoned (NaN) before each run: each run must match
 * the reference, and the runs must be bit-identical (the split-K counters reset themselves and partials are
 * added in a fixed order). Tolerance ‖gpu − ref‖ / ‖ref‖ ≤ 1e-2 (bf16 outputs, fp32 accumulation); rows
 * without an adapter must stay bit-identical in y. Prints "CHECK sgmv ..." lines. At the default
 * {@link CudaOptions#sgmvTcMinRows}, the prefill cases' segments of 16 rows or more take the tensor-core kernels
 * and the shorter ones these (both in one call); {@link CudaSgmvTensorCoreTest} runs every case on each path.
 */
@Tag("gpu")
class CudaSgmvTest extends GpuBackendTest {
    static final double TOL = 1e-2;
    static final int RUNS = 3;

    static void assertClose(String what, float[] got, float[] want, double tol) {
        double err = relativeError(got, want);
        System.out.printf("CHECK sgmv %-86s relErr %.2e (tol %.0e) %s%n", what, err, tol, err <= tol ? "ok" : "FAIL");
        assertThat(err).as(what + ": ‖gpu − ref‖/‖ref‖").isLessThanOrEqualTo(tol);
    }

    /** One SGMV problem: segment lengths and slots, a rank per slot (0: no adapter there), sizes. */
    record Case(String name, int in, int out, int vCols, int yCol, int yCols, int[] segLens, int[] segSlots,
                int[] slotRanks) {
    }

    /**
     * Runs the case's shrink and expand {@link #RUNS} times on the same GPU buffers and compares each run with
     * the reference (shrink on the defined part of v; expand on all of y, from the GPU's own v).
     */
    void check(Case c, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int slots = c.slotRanks().length;
        LoraWeights gW = LoraWeights.empty(slots);
        LoraWeights rW = LoraWeights.empty(slots);
        List<Tensor> gOwned = new ArrayList<>();
        for (int s = 0; s < slots; s++) {
            int rank = c.slotRanks()[s];
            if (rank == 0) {
                continue;
            }
            TensorData a = TensorData.of("A" + s, DType.BF16, rank, c.in(), random(rng, rank * c.in(), 0.05));
            TensorData b = TensorData.of("B" + s, DType.BF16, c.out(), rank, random(rng, c.out() * rank, 0.1));
            gW.a()[s] = gpu.loadWeight(a);
            gW.b()[s] = gpu.loadWeight(b);
            rW.a()[s] = ref.loadWeight(a);
            rW.b()[s] = ref.loadWeight(b);
            gOwned.add(gW.a()[s]);
            gOwned.add(gW.b()[s]);
            gW.rank()[s] = rW.rank()[s] = rank;
            gW.scale()[s] = rW.scale()[s] = (float) (16.0 / rank);
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

        Tensor gx = gpu.allocate(rows, c.in());
        Tensor gv = gpu.allocate(rows, c.vCols());
        Tensor gy = gpu.allocate(rows, c.yCols());
        Tensor rx = ref.allocate(rows, c.in());
        Tensor rv = ref.allocate(rows, c.vCols());
        Tensor ry = ref.allocate(rows, c.yCols());
        gpu.upload(xv, gx);
        ref.upload(xv, rx);
        ref.upload(poison, rv);
        ref.sgmvShrink(rx, rW, segments, rv);
        float[] refV = new float[rows * c.vCols()];
        ref.download(rv, refV);

        int tiles = SgmvTiles.count(rows, slots);
        int splits = Math.ceilDiv(c.in(), gpu.shrinkChunk(tiles, c.vCols(), c.in()));
        String what = c.name() + " [" + tiles + " tiles, " + splits + " splits]";
        float[] firstV = null;
        float[] firstY = null;
        for (int run = 0; run < RUNS; run++) {
            gpu.upload(poison, gv);
            gpu.upload(y0, gy);
            gpu.sgmvShrink(gx, gW, segments, gv);
            float[] v = new float[rows * c.vCols()];
            gpu.download(gv, v);
            assertClose("shrink " + what + " run " + run, defined(v, c, starts), defined(refV, c, starts), TOL);

            // The reference expands the GPU's v, so the expand check sees only the expand kernel's error.
            ref.upload(v, rv);
            ref.upload(y0, ry);
            ref.sgmvExpand(rv, rW, segments, ry, c.yCol());
            gpu.sgmvExpand(gv, gW, segments, gy, c.yCol());
            float[] y = new float[rows * c.yCols()];
            float[] yRef = new float[rows * c.yCols()];
            gpu.download(gy, y);
            ref.download(ry, yRef);
            assertClose("expand " + what + " run " + run + " (all of y)", y, yRef, TOL);
            float[] added = GpuChecks.added(y, y0);
            float[] addedRef = GpuChecks.added(yRef, y0);
            assertClose("expand " + what + " run " + run + " (added part)", added, addedRef, 2 * TOL);
            for (int i = 0; i < c.segLens().length; i++) {
                int slot = c.segSlots()[i];
                boolean adapted = slot >= 0 && c.slotRanks()[slot] > 0;
                for (int r = starts[i]; r < starts[i + 1]; r++) {
                    for (int col = 0; col < c.yCols(); col++) {
                        boolean inRange = col >= c.yCol() && col < c.yCol() + c.out();
                        if (!adapted || !inRange) {
                            assertThat(y[r * c.yCols() + col]).as("%s: untouched y[%d, %d]", c.name(), r, col)
                                    .isEqualTo(y0[r * c.yCols() + col]);
                        }
                    }
                }
            }
            if (run == 0) {
                firstV = defined(v, c, starts);
                firstY = y;
            } else {
                assertBitIdentical(String.format("%s: shrink run %d equals run 0 bit for bit", c.name(), run), defined(v, c, starts), firstV);
                assertBitIdentical(String.format("%s: expand run %d equals run 0 bit for bit", c.name(), run), y, firstY);
            }
        }
        System.out.printf("CHECK sgmv %-86s %d runs bit-identical ok%n", what, RUNS);
        for (Tensor t : gOwned) {
            gpu.free(t);
        }
        for (Tensor t : new Tensor[] {gx, gv, gy}) {
            gpu.free(t);
        }
    }

    /** The elements of v the contract defines: columns [0, rank) of rows whose segment has an adapter. */
    static float[] defined(float[] v, Case c, int[] starts) {
        List<Float> out = new ArrayList<>();
        for (int i = 0; i < c.segLens().length; i++) {
            int slot = c.segSlots()[i];
            if (slot < 0 || c.slotRanks()[slot] == 0) {
                continue;
            }
            for (int r = starts[i]; r < starts[i + 1]; r++) {
                for (int k = 0; k < c.slotRanks()[slot]; k++) {
                    out.add(v[r * c.vCols() + k]);
                }
            }
        }
        float[] a = new float[out.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = out.get(i);
        }
        return a;
    }

    static int[] fill(int n, int value) {
        int[] a = new int[n];
        Arrays.fill(a, value);
        return a;
    }

    static int[] iota(int n) {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) {
            a[i] = i;
        }
        return a;
    }

    @Test
    void decodeBatchesOfDistinctAdaptersAtEveryRankMatchReference() {
        long seed = 100;
        for (int rank : new int[] {4, 8, 12, 16, 32, 64}) {
            for (int batch : new int[] {1, 32}) {
                // v as wide as the rank, and as wide as a model's largest rank (64): rank blocks past it exit
                for (int vCols : new int[] {rank, 64}) {
                    check(new Case("decode b" + batch + " r" + rank + " v" + vCols + " 4096→4096", 4096, 4096, vCols, 0,
                            4096, fill(batch, 1), iota(batch), fill(batch, rank)), seed++);
                }
            }
        }
    }

    @Test
    void decodeBatchOfMixedRanksWithAndWithoutAdaptersMatchesReference() {
        int batch = 40;
        int[] ranks = new int[batch];
        int[] slots = new int[batch];
        int[] choices = {4, 8, 12, 16, 32, 64, 0};
        for (int i = 0; i < batch; i++) {
            ranks[i] = choices[i % choices.length];
            slots[i] = i % 9 == 8 ? -1 : i;
        }
        check(new Case("decode b40 mixed ranks 4-64/12, absent slots and -1, 4096→4096", 4096, 4096, 64, 0, 4096,
                fill(batch, 1), slots, ranks), 200);
        check(new Case("decode b40 mixed ranks, down_proj 11008→4096", 11008, 4096, 64, 0, 4096,
                fill(batch, 1), slots, ranks), 201);
        check(new Case("decode b40 mixed ranks, gate 4096→11008 into the fused gate|up row", 4096, 11008, 64, 0, 22016,
                fill(batch, 1), slots, ranks), 202);
    }

    @Test
    void prefillSegmentsOfOneToHundredsOfRowsMatchReference() {
        check(new Case("prefill segs 1/3/8/9/17/300/129/64 ranks 16/64/8/12, 4096→1024 at col 4096", 4096, 1024, 64,
                4096, 6144, new int[] {1, 3, 8, 9, 17, 300, 129, 64}, new int[] {0, 1, 2, 3, -1, 4, 5, 6},
                new int[] {16, 64, 8, 12, 32, 4, 16}), 300);
        check(new Case("prefill segs 5/250/2 ranks 32/16, 11008→4096", 11008, 4096, 32, 0, 4096,
                new int[] {5, 250, 2}, new int[] {1, 0, 2}, new int[] {32, 16, 0}), 301);
        check(new Case("mixed step: 6 decode rows + prefill 200 rows, rank 16, 4096→4096", 4096, 4096, 16, 0, 4096,
                new int[] {1, 1, 1, 200, 1, 1, 1}, new int[] {0, 1, 2, 3, 4, 5, 6}, fill(7, 16)), 302);
    }

    @Test
    void oddSizesMatchReference() {
        check(new Case("odd in 1000→999 at col 3, ranks 5/12, slot 4 empty, decode", 1000, 999, 12, 3, 1010,
                fill(6, 1), new int[] {0, 1, 2, 4, -1, 5}, new int[] {5, 12, 12, 5, 0, 12}), 400);
        check(new Case("odd in 72→72, ranks 4/12, prefill", 72, 72, 16, 0, 72, new int[] {13, 1, 30},
                new int[] {0, 1, -1}, new int[] {4, 12}), 401);
        check(new Case("in 2003→4096 (unaligned rows: scalar loads, split-K), rank 16, decode b8", 2003, 4096, 16, 0, 4096,
                fill(8, 1), iota(8), fill(8, 16)), 402);
        check(new Case("in 4096→72 at col 8, rank 64, decode b3", 4096, 72, 64, 8, 100, fill(3, 1), iota(3),
                fill(3, 64)), 403);
    }

    @Test
    void splitKShrinkReplaysBitIdenticallyInACudaGraph() {
        SplittableRandom rng = new SplittableRandom(500);
        int rows = 32;
        int in = 11008;
        int rank = 16;
        Tensor x = gpu.allocate(rows, in);
        Tensor v = gpu.allocate(rows, rank);
        gpu.upload(random(rng, rows * in, 1), x);
        LoraWeights w = LoraWeights.empty(rows);
        for (int s = 0; s < rows; s++) {
            w.a()[s] = gpu.loadWeight(TensorData.of("a", DType.BF16, rank, in, random(rng, rank * in, 0.05)));
            w.b()[s] = gpu.loadWeight(TensorData.of("b", DType.BF16, 64, rank, random(rng, 64 * rank, 0.1)));
            w.rank()[s] = rank;
            w.scale()[s] = 1f;
        }
        Segments seg = new Segments(iota(rows + 1), iota(rows));
        Runnable shrink = () -> gpu.sgmvShrink(x, w, seg, v);
        shrink.run();
        float[] eager = new float[rows * rank];
        gpu.download(v, eager);
        float[] poison = new float[rows * rank];
        Arrays.fill(poison, Float.NaN);
        float[] replayed = new float[rows * rank];
        try (CudaBackend.CudaGraph graph = gpu.capture(shrink)) {
            for (int replay = 0; replay < 5; replay++) {
                gpu.upload(poison, v);
                graph.launch();
                gpu.download(v, replayed);
                assertBitIdentical(String.format("replay %d", replay), replayed, eager);
            }
        }
        int splits = Math.ceilDiv(in, gpu.shrinkChunk(SgmvTiles.count(rows, rows), rank, in));
        System.out.printf("CHECK sgmv graph replay of a split-K shrink (%d splits) x5 bit-identical ok%n", splits);
        assertThat(splits).isGreaterThan(1);
        for (int s = 0; s < rows; s++) {
            gpu.free(w.a()[s]);
            gpu.free(w.b()[s]);
        }
        gpu.free(x);
        gpu.free(v);
    }

    @Test
    void anAdapterSplitOverSeveralSegmentsBeyondTheTileBoundIsRefused() {
        SplittableRandom rng = new SplittableRandom(600);
        int rows = 16;
        Tensor x = gpu.allocate(rows, 64);
        Tensor v = gpu.allocate(rows, 8);
        LoraWeights w = LoraWeights.empty(1);
        w.a()[0] = gpu.loadWeight(TensorData.of("a", DType.BF16, 8, 64, random(rng, 8 * 64, 0.05)));
        w.b()[0] = gpu.loadWeight(TensorData.of("b", DType.BF16, 64, 8, random(rng, 64 * 8, 0.1)));
        w.rank()[0] = 8;
        w.scale()[0] = 1f;
        int[] starts = iota(rows + 1);
        int[] slots = new int[rows];
        for (int i = 0; i < rows; i++) {
            slots[i] = i % 2 == 0 ? 0 : -1; // slot 0 in 8 one-row segments: 8 tiles, the bound for 1 slot is 2
        }
        assertThatThrownBy(() -> gpu.sgmvShrink(x, w, new Segments(starts, slots), v))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("one segment");
        System.out.println("CHECK sgmv non-contiguous adapter rows refused ok");
        for (Tensor t : new Tensor[] {x, v, w.a()[0], w.b()[0]}) {
            gpu.free(t);
        }
    }
}
