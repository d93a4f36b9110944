package ai.punica.backend;

import static ai.punica.backend.BackendComparison.assertClose;
import static ai.punica.backend.BackendComparison.download;
import static ai.punica.backend.BackendComparison.maxAbs;
import static ai.punica.backend.BackendComparison.nans;
import static ai.punica.backend.BackendComparison.random;
import static ai.punica.backend.BackendComparison.upload;
import static ai.punica.backend.BackendComparison.weight;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The grouped SGMV ops ({@link Backend#sgmvShrinkGroup}, {@link Backend#sgmvExpandGroup}) against one
 * reference single-projection op per projection: projection i's shrink lands in columns
 * {@code [i·w, i·w + rank)} of v, its expand reads them and adds into its own columns of y. Seeded random
 * groups of 2 and 3 projections with ranks 1 to 64 mixed per projection and slot, slots present in only
 * some projections (and in none), a segment without adapter, segments of 1 to 50 rows.
 *
 * <p>Tolerance: the reference's group ops (its defaults) equal the single ops bit for bit; the CPU
 * backend's within relative error 1e-5 and max abs error 1e-5 · max|ref| (float32 against double).
 */
class SgmvGroupTest {

    private static final int SLOTS = 6;
    private static final int MAX_RANK = 64;
    private static final double REL = 1e-5;
    private static final double ABS = 1e-5;

    static Stream<Arguments> cases() {
        List<Arguments> cases = new ArrayList<>();
        List<Supplier<Backend>> backends = new ArrayList<>();
        List<String> names = new ArrayList<>();
        backends.add(ReferenceBackend::new);
        names.add("reference");
        BackendComparison.variants().forEach(v -> {
            backends.add(v::create);
            names.add("cpu " + v);
        });
        int[][] outs = {{70, 30, 30}, {50, 50}, {129, 1, 17}};
        for (int b = 0; b < backends.size(); b++) {
            for (int[] out : outs) {
                for (int in : new int[] {97, 300}) {
                    cases.add(Arguments.of(names.get(b), backends.get(b), in, out));
                }
            }
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0}, in {2}, outs {3}")
    @MethodSource("cases")
    void groupOpsEqualOneSingleOpPerProjection(String name, Supplier<Backend> factory, int in, int[] outs) {
        SplittableRandom random = new SplittableRandom(in * 131L + outs.length * 7L + outs[0]);
        int n = outs.length;
        // ranks[m][slot], 0: slot absent in projection m. Slot 5 adapts no projection of the group.
        int[][] ranks = randomRanks(random, n);
        ranks[n - 1][0] = 0;
        ranks[0][0] = MAX_RANK;
        Segments segments = randomSegments(random);
        int rows = segments.rows() + 3;
        int w = MAX_RANK + 1;
        int vCols = n * w + n - 1;
        int[] yCols = new int[n];
        int yWidth = 2;
        for (int m = 0; m < n; m++) {
            yCols[m] = yWidth;
            yWidth += outs[m];
        }
        yWidth += 3;

        List<List<TensorData[]>> weights = randomWeights(random, in, outs, ranks);
        float[] x = random(random, rows * in, 1);
        float[] vIn = random(random, rows * vCols, 1);
        float[] y = random(random, rows * yWidth, 1);

        // Wanted: one single op per projection on the reference, into a v of its own.
        float[][] wantV = new float[n][];
        float[] wantY;
        try (Backend ref = new ReferenceBackend()) {
            List<LoraWeights> group = load(ref, weights, ranks);
            Tensor yt = upload(ref, rows, yWidth, y);
            Tensor xt = upload(ref, rows, in, x);
            for (int m = 0; m < n; m++) {
                Tensor v = upload(ref, rows, w, nans(rows * w));
                ref.sgmvShrink(xt, group.get(m), segments, v);
                wantV[m] = download(ref, v);
                float[] vm = new float[rows * w];
                for (int r = 0; r < rows; r++) {
                    System.arraycopy(vIn, r * vCols + m * w, vm, r * w, w);
                }
                ref.sgmvExpand(upload(ref, rows, w, vm), group.get(m), segments, yt, yCols[m]);
            }
            wantY = download(ref, yt);
        }

        float[] gotV;
        float[] gotY;
        try (Backend backend = factory.get()) {
            List<LoraWeights> group = load(backend, weights, ranks);
            Tensor v = upload(backend, rows, vCols, nans(rows * vCols));
            backend.sgmvShrinkGroup(upload(backend, rows, in, x), group, segments, v);
            gotV = download(backend, v);
            Tensor yt = upload(backend, rows, yWidth, y);
            backend.sgmvExpandGroup(upload(backend, rows, vCols, vIn), group, segments, yt, yCols);
            gotY = download(backend, yt);
        }

        boolean exact = name.equals("reference");
        for (int m = 0; m < n; m++) {
            List<Float> got = new ArrayList<>();
            List<Float> want = new ArrayList<>();
            for (int i = 0; i < segments.count(); i++) {
                int slot = segments.slots()[i];
                if (slot < 0 || ranks[m][slot] == 0) {
                    continue;
                }
                for (int r = segments.starts()[i]; r < segments.starts()[i + 1]; r++) {
                    for (int k = 0; k < ranks[m][slot]; k++) {
                        got.add(gotV[r * vCols + m * w + k]);
                        want.add(wantV[m][r * w + k]);
                    }
                }
            }
            float[] g = toArray(got);
            float[] wv = toArray(want);
            assertThat(g.length).as("adapted v elements of projection %d", m).isPositive();
            if (exact) {
                assertThat(g).as("sgmvShrinkGroup projection %d on %s", m, name).containsExactly(wv);
            } else {
                assertClose("sgmvShrinkGroup projection " + m + " on " + name, g, wv, g.length, REL, ABS * maxAbs(wv, wv.length));
            }
        }
        if (exact) {
            assertThat(gotY).as("sgmvExpandGroup on %s", name).containsExactly(wantY);
        } else {
            assertClose("sgmvExpandGroup on " + name, gotY, wantY, gotY.length, REL, ABS * maxAbs(wantY, wantY.length));
        }
    }

    @ParameterizedTest(name = "{0}, in {2}, outs {3}")
    @MethodSource("cases")
    void matmulLoraIsTheGemmThenTheGroupsShrinkAndExpand(String name, Supplier<Backend> factory, int in, int[] outs) {
        SplittableRandom random = new SplittableRandom(in * 31L + outs.length * 5L + outs[1]);
        int n = outs.length;
        int[][] ranks = randomRanks(random, n);
        Segments segments = randomSegments(random);
        int rows = segments.rows();
        int w = MAX_RANK;
        int total = 0;
        int[] cols = new int[n];
        for (int m = 0; m < n; m++) {
            cols[m] = total;
            total += outs[m];
        }
        List<List<TensorData[]>> weights = randomWeights(random, in, outs, ranks);
        TensorData base = weight("W", DType.BF16, total, in, random(random, total * in, 0.1), -1);
        TensorData bias = weight("bias", DType.F32, 1, total, random(random, total, 0.5), -1);
        float[] x = random(random, rows * in, 1);

        // Wanted: the reference's GEMM, then one single shrink and expand per projection.
        float[] want;
        try (Backend ref = new ReferenceBackend()) {
            List<LoraWeights> group = load(ref, weights, ranks);
            Tensor xt = upload(ref, rows, in, x);
            Tensor yt = ref.allocate(rows, total);
            ref.matmul(xt, ref.loadWeight(base), ref.loadWeight(bias), yt);
            for (int m = 0; m < n; m++) {
                Tensor v = upload(ref, rows, w, nans(rows * w));
                ref.sgmvShrink(xt, group.get(m), segments, v);
                ref.sgmvExpand(v, group.get(m), segments, yt, cols[m]);
            }
            want = download(ref, yt);
        }
        float[] got;
        try (Backend backend = factory.get()) {
            List<LoraWeights> group = load(backend, weights, ranks);
            Tensor yt = backend.allocate(rows, total);
            backend.matmulLora(upload(backend, rows, in, x), backend.loadWeight(base), backend.loadWeight(bias), yt,
                    group, segments, upload(backend, rows, n * w, nans(rows * n * w)), cols);
            got = download(backend, yt);
        }
        if (name.equals("reference")) {
            assertThat(got).as("matmulLora on %s", name).isEqualTo(want);
        } else {
            assertClose("matmulLora on " + name, got, want, got.length, REL, ABS * maxAbs(want, want.length));
        }
    }

    /** ranks[m][slot] in 1..{@value #MAX_RANK}, about a quarter 0 (slot absent in projection m); the last slot 0 in all. */
    private static int[][] randomRanks(SplittableRandom random, int n) {
        int[][] ranks = new int[n][SLOTS];
        for (int m = 0; m < n; m++) {
            for (int s = 0; s < SLOTS - 1; s++) {
                ranks[m][s] = random.nextInt(4) == 0 ? 0 : 1 + random.nextInt(MAX_RANK);
            }
        }
        return ranks;
    }

    /** Per projection and slot: A (bf16) and B (f32) of the slot's rank, or null where the rank is 0. */
    private static List<List<TensorData[]>> randomWeights(SplittableRandom random, int in, int[] outs, int[][] ranks) {
        List<List<TensorData[]>> weights = new ArrayList<>();
        for (int m = 0; m < outs.length; m++) {
            List<TensorData[]> perSlot = new ArrayList<>();
            for (int s = 0; s < SLOTS; s++) {
                int r = ranks[m][s];
                perSlot.add(r == 0 ? null : new TensorData[] {
                        weight("A" + m + "." + s, DType.BF16, r, in, random(random, r * in, 0.3), -1),
                        weight("B" + m + "." + s, DType.F32, outs[m], r, random(random, outs[m] * r, 0.3), -1)});
            }
            weights.add(perSlot);
        }
        return weights;
    }

    /** Every slot (and -1) once, in random order, segments of 1 to 50 rows. */
    private static Segments randomSegments(SplittableRandom random) {
        List<Integer> order = new ArrayList<>();
        for (int s = -1; s < SLOTS; s++) {
            order.add(s);
        }
        for (int i = order.size() - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            order.set(i, order.set(j, order.get(i)));
        }
        int[] starts = new int[order.size() + 1];
        int[] slots = new int[order.size()];
        for (int i = 0; i < slots.length; i++) {
            slots[i] = order.get(i);
            starts[i + 1] = starts[i] + 1 + random.nextInt(50);
        }
        return new Segments(starts, slots);
    }

    private static List<LoraWeights> load(Backend backend, List<List<TensorData[]>> weights, int[][] ranks) {
        List<LoraWeights> group = new ArrayList<>();
        for (int m = 0; m < weights.size(); m++) {
            LoraWeights lora = LoraWeights.empty(SLOTS);
            for (int s = 0; s < SLOTS; s++) {
                TensorData[] ab = weights.get(m).get(s);
                if (ab != null) {
                    lora.a()[s] = backend.loadWeight(ab[0]);
                    lora.b()[s] = backend.loadWeight(ab[1]);
                    lora.rank()[s] = ranks[m][s];
                    lora.scale()[s] = 0.5f + s;
                }
            }
            group.add(lora);
        }
        return group;
    }

    private static float[] toArray(List<Float> values) {
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = values.get(i);
        }
        return out;
    }
}
