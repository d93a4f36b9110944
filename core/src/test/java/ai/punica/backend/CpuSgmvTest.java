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
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * SGMV shrink and expand of the CPU backend against the reference: one batch mixing ranks 1 to 64,
 * segments of 0, 1 and hundreds of rows, a segment without adapter (slot -1), an adapter that does not
 * adapt this projection (null A), and a yCol offset into a fused output. Rows and columns SGMV must not
 * touch are checked bit for bit.
 *
 * <p>Tolerance: relative error ‖cpu − ref‖₂/‖ref‖₂ ≤ 1e-5 and max abs error ≤ 1e-5 · max|ref| (float32
 * against double accumulation; observed at most 6e-7 relative, 1.4e-6 · max|ref| abs).
 */
class CpuSgmvTest {

    private static final double REL = 1e-5;
    private static final double ABS = 1e-5;

    /**
     * Rank of each slot; 0 marks a slot whose adapter does not adapt this projection (A is null). With
     * 16 float lanes, expand of 1-3 rows: 3 is all scalar, 8 and 12 one half-width vector, 16 and 20 one
     * vector, 33 and 64 a short loop (12, 20 and 33 with scalar tails); 4 rows or more take the
     * transposed form.
     */
    private static final int[] RANKS = {20, 8, 16, 3, 64, 33, 0, 12};
    private static final float[] SCALES = {2f, 0.5f, 1f, 4f, 0.125f, 1.5f, 1f, 8f};
    /** (slot, rows) per segment. */
    private static final int[][] SEGMENTS = {{2, 1}, {-1, 5}, {4, 130}, {0, 1}, {6, 7}, {1, 64}, {3, 0}, {5, 3}, {7, 200}};
    /** Tensors have more rows than the segments cover; the extra rows must stay untouched. */
    private static final int EXTRA_ROWS = 4;

    static Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        BackendComparison.variants().forEach(variant -> {
            for (DType dtype : DType.values()) {
                cases.add(Arguments.of(variant, dtype, 97, 70));
                cases.add(Arguments.of(variant, dtype, 1100, 300));
            }
        });
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}, {1} adapters, in {2}, out {3}")
    @MethodSource("cases")
    void mixedRankBatchMatchesReference(Variant variant, DType dtype, int in, int out) {
        SplittableRandom random = new SplittableRandom(in * 31L + out + dtype.ordinal());
        int[] starts = new int[SEGMENTS.length + 1];
        int[] slots = new int[SEGMENTS.length];
        for (int i = 0; i < SEGMENTS.length; i++) {
            slots[i] = SEGMENTS[i][0];
            starts[i + 1] = starts[i] + SEGMENTS[i][1];
        }
        Segments segments = new Segments(starts, slots);
        run(variant, dtype, in, out, segments, random);
    }

    static Stream<Arguments> decodeCases() {
        return BackendComparison.variants().flatMap(v -> Stream.of(DType.values()).map(d -> Arguments.of(v, d)));
    }

    @ParameterizedTest(name = "{0}, {1} adapters")
    @MethodSource("decodeCases")
    void manySingleRowSegmentsMatchReference(Variant variant, DType dtype) {
        // Decode: 48 one-row segments cycling through the slots (-1 included), as many small tasks;
        // one-row expands take the dot-form kernels for every rank (many-row ones the transposed form).
        int count = 48;
        int[] starts = new int[count + 1];
        int[] slots = new int[count];
        for (int i = 0; i < count; i++) {
            starts[i + 1] = i + 1;
            slots[i] = i % (RANKS.length + 1) - 1;
        }
        run(variant, dtype, 1024, 1024, new Segments(starts, slots), new SplittableRandom(77 + dtype.ordinal()));
    }

    private static void run(Variant variant, DType dtype, int in, int out, Segments segments, SplittableRandom random) {
        List<TensorData> as = new ArrayList<>();
        List<TensorData> bs = new ArrayList<>();
        for (int slot = 0; slot < RANKS.length; slot++) {
            int rank = RANKS[slot];
            as.add(rank == 0 ? null : weight("A" + slot, dtype, rank, in, random(random, rank * in, 0.3), slot % 2 == 0 ? -1 : 1));
            bs.add(rank == 0 ? null : weight("B" + slot, dtype, out, rank, random(random, out * rank, 0.3), slot % 3 == 0 ? -1 : 2));
        }
        int rows = segments.rows() + EXTRA_ROWS;
        int vCols = 67;
        int yCol = 5;
        int yCols = yCol + out + 4;
        float[] x = random(random, rows * in, 1);
        float[] vIn = random(random, rows * vCols, 1);
        float[] y = random(random, rows * yCols, 1);

        float[][] want = run(new ReferenceBackend(), as, bs, segments, rows, in, vCols, yCol, yCols, x, vIn, y);
        float[][] got = run(variant.create(), as, bs, segments, rows, in, vCols, yCol, yCols, x, vIn, y);

        // Shrink: compare v[r, 0:rank] of adapted rows only (the rest is undefined).
        List<Float> gotV = new ArrayList<>();
        List<Float> wantV = new ArrayList<>();
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (slot < 0 || RANKS[slot] == 0) {
                continue;
            }
            for (int r = segments.starts()[i]; r < segments.starts()[i + 1]; r++) {
                for (int k = 0; k < RANKS[slot]; k++) {
                    gotV.add(got[0][r * vCols + k]);
                    wantV.add(want[0][r * vCols + k]);
                }
            }
        }
        float[] gv = toArray(gotV);
        float[] wv = toArray(wantV);
        assertClose("sgmvShrink " + dtype + " on " + variant, gv, wv, gv.length, REL, ABS * maxAbs(wv, wv.length));

        // Expand: rows without an adapter, extra rows and columns outside [yCol, yCol + out) keep their bits.
        boolean[] adapted = new boolean[rows];
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            for (int r = segments.starts()[i]; r < segments.starts()[i + 1]; r++) {
                adapted[r] = slot >= 0 && RANKS[slot] > 0;
            }
        }
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < yCols; c++) {
                if (!adapted[r] || c < yCol || c >= yCol + out) {
                    assertThat(got[1][r * yCols + c]).as("untouched y[%d, %d]", r, c).isEqualTo(y[r * yCols + c]);
                }
            }
        }
        assertClose("sgmvExpand " + dtype + " on " + variant, got[1], want[1], rows * yCols, REL,
                ABS * maxAbs(want[1], want[1].length));
    }

    /** Returns {v after shrink, y after expand (of the random v, not the shrink output)}. */
    private static float[][] run(Backend backend, List<TensorData> as, List<TensorData> bs, Segments segments,
                                 int rows, int in, int vCols, int yCol, int yCols, float[] x, float[] vIn, float[] y) {
        try (backend) {
            LoraWeights lora = LoraWeights.empty(RANKS.length);
            for (int slot = 0; slot < RANKS.length; slot++) {
                if (as.get(slot) != null) {
                    lora.a()[slot] = backend.loadWeight(as.get(slot));
                    lora.b()[slot] = backend.loadWeight(bs.get(slot));
                    lora.rank()[slot] = RANKS[slot];
                    lora.scale()[slot] = SCALES[slot];
                }
            }
            Tensor v = upload(backend, rows, vCols, nans(rows * vCols));
            backend.sgmvShrink(upload(backend, rows, in, x), lora, segments, v);
            Tensor yt = upload(backend, rows, yCols, y);
            backend.sgmvExpand(upload(backend, rows, vCols, vIn), lora, segments, yt, yCol);
            return new float[][] {download(backend, v), download(backend, yt)};
        }
    }

    private static float[] toArray(List<Float> values) {
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = values.get(i);
        }
        return out;
    }
}
