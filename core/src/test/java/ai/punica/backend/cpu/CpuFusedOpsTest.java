package ai.punica.backend.cpu;

import static ai.punica.backend.BackendComparison.assertClose;
import static ai.punica.backend.BackendComparison.download;
import static ai.punica.backend.BackendComparison.maxAbs;
import static ai.punica.backend.BackendComparison.random;
import static ai.punica.backend.BackendComparison.upload;
import static ai.punica.backend.BackendComparison.weight;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.BackendComparison.Variant;
import ai.punica.backend.BackendComparison;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The CPU backend's fused operations against the separate ones they replace, on the same backend, on
 * seeded random data: {@code addRmsNorm} = {@code add} then {@code rmsNorm} and {@code ropeAppendKv} =
 * {@code rope} then {@code appendKv}, exactly (the same float32 operations in the same order), for every
 * kernel variant. The updated residual and the norm are also compared with the reference backend
 * (exact for the add, 1e-5 relative for the norm as in CpuDenseOpsTest).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class CpuFusedOpsTest {

    private final ReferenceBackend ref = new ReferenceBackend();
    private final List<CpuBackend> cpus = new ArrayList<>();

    @AfterAll
    void close() {
        cpus.forEach(CpuBackend::close);
        ref.close();
    }

    private CpuBackend cpu(Variant variant) {
        CpuBackend cpu = variant.create();
        cpus.add(cpu);
        return cpu;
    }

    /** (rows, cols): single element, odd widths, a vector-width tail, model sizes. */
    private static final int[][] NORM_SHAPES = {{1, 1}, {3, 7}, {5, 64}, {40, 1000}, {2, 4099}, {9, 4096}};

    static Stream<Arguments> normCases() {
        return BackendComparison.variants().flatMap(v -> Stream.of(0, 1, 2, 3, 4, 5).map(s -> Arguments.of(v, s)));
    }

    @ParameterizedTest(name = "{0}, shape #{1}")
    @MethodSource("normCases")
    void addRmsNormEqualsAddThenRmsNorm(Variant variant, int shapeIndex) {
        int rows = NORM_SHAPES[shapeIndex][0];
        int cols = NORM_SHAPES[shapeIndex][1];
        SplittableRandom random = new SplittableRandom(700 + shapeIndex);
        float[] x = random(random, rows * cols, 2);
        float[] delta = random(random, rows * cols, 1);
        DType dtype = shapeIndex % 2 == 0 ? DType.BF16 : DType.F32;
        TensorData w = weight("norm", dtype, 1, cols, random(random, cols, 1.5), shapeIndex % 3 == 0 ? -1 : 2);
        CpuBackend cpu = cpu(variant);
        Tensor weight = cpu.loadWeight(w);

        Tensor xSeparate = upload(cpu, rows, cols, x);
        Tensor outSeparate = upload(cpu, rows, cols, BackendComparison.nans(rows * cols));
        cpu.add(xSeparate, upload(cpu, rows, cols, delta), xSeparate);
        cpu.rmsNorm(xSeparate, weight, 1e-5f, outSeparate);

        Tensor xFused = upload(cpu, rows, cols, x);
        Tensor outFused = upload(cpu, rows, cols, BackendComparison.nans(rows * cols));
        cpu.addRmsNorm(xFused, upload(cpu, rows, cols, delta), weight, 1e-5f, outFused);
        String what = "addRmsNorm " + rows + "x" + cols + " " + dtype + " on " + variant;
        assertThat(download(cpu, xFused)).as(what + ": x").containsExactly(download(cpu, xSeparate));
        assertThat(download(cpu, outFused)).as(what + ": out").containsExactly(download(cpu, outSeparate));

        Tensor xRef = upload(ref, rows, cols, x);
        Tensor outRef = ref.allocate(rows, cols);
        ref.addRmsNorm(xRef, upload(ref, rows, cols, delta), ref.loadWeight(w), 1e-5f, outRef);
        float[] want = download(ref, outRef);
        assertThat(download(cpu, xFused)).as(what + ": x vs reference").containsExactly(download(ref, xRef));
        assertClose(what + " vs reference", download(cpu, outFused), want, rows * cols, 1e-5, 1e-5 * maxAbs(want, want.length));
    }

    @Test
    void addRmsNormRejectsMismatchedDelta() {
        CpuBackend cpu = cpu(BackendComparison.variants().findFirst().orElseThrow());
        Tensor weight = cpu.loadWeight(TensorData.of("norm", DType.F32, 1, 8, random(new SplittableRandom(1), 8, 1)));
        assertThatThrownBy(() -> cpu.addRmsNorm(cpu.allocate(2, 8), cpu.allocate(3, 8), weight, 1e-5f, cpu.allocate(2, 8)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("addRmsNorm").hasMessageContaining("delta");
    }

    /** (rows, query heads, KV heads, headDim): GQA, MHA, a head size that is no vector width multiple. */
    private static final int[][] ROPE_SHAPES = {{1, 2, 1, 8}, {7, 8, 2, 64}, {33, 4, 4, 128}, {12, 6, 2, 36}};

    static Stream<Arguments> ropeCases() {
        return BackendComparison.variants().flatMap(v -> Stream.of(0, 1, 2, 3).map(s -> Arguments.of(v, s)));
    }

    @ParameterizedTest(name = "{0}, shape #{1}")
    @MethodSource("ropeCases")
    void ropeAppendKvEqualsRopeThenAppendKv(Variant variant, int shapeIndex) {
        int[] shape = ROPE_SHAPES[shapeIndex];
        int rows = shape[0];
        int heads = shape[1];
        int kvHeads = shape[2];
        int headDim = shape[3];
        int qCols = heads * headDim;
        int kvCols = kvHeads * headDim;
        int cols = qCols + 2 * kvCols;
        SplittableRandom random = new SplittableRandom(800 + shapeIndex);
        float[] invFreq = new float[headDim / 2];
        for (int i = 0; i < invFreq.length; i++) {
            invFreq[i] = (float) Math.pow(10000, -2.0 * i / headDim);
        }
        RopeTable rope = new RopeTable(invFreq, shapeIndex % 2 == 0 ? 1f : 1.1f);
        float[] qkv = random(random, rows * cols, 2);
        int[] positions = random.ints(rows, 0, 20_000).toArray();
        int pageSize = 4;
        int numPages = (2 * rows + pageSize - 1) / pageSize + 1;
        int[] slots = distinctSlots(rows, numPages * pageSize, 900 + shapeIndex);
        int layer = 1;

        CpuBackend cpu = cpu(variant);
        float[] history = random(random, numPages * pageSize * cols, 1);
        KvStorage kvSeparate = prefilledKv(cpu, numPages, pageSize, kvHeads, headDim, history);
        KvStorage kvFused = prefilledKv(cpu, numPages, pageSize, kvHeads, headDim, history);

        Tensor separate = upload(cpu, rows, cols, qkv);
        cpu.rope(separate, positions, rope, heads + kvHeads, headDim);
        cpu.appendKv(kvSeparate, layer, separate, qCols, qCols + kvCols, slots);
        Tensor fused = upload(cpu, rows, cols, qkv);
        cpu.ropeAppendKv(fused, positions, rope, heads, kvHeads, headDim, kvFused, layer, qCols, qCols + kvCols, slots);

        String what = "ropeAppendKv " + rows + " rows, " + heads + "/" + kvHeads + " heads of " + headDim + " on " + variant;
        assertThat(download(cpu, fused)).as(what + ": qkv").containsExactly(download(cpu, separate));
        CpuKvStorage a = (CpuKvStorage) kvFused;
        CpuKvStorage b = (CpuKvStorage) kvSeparate;
        assertThat(a.keys().toArray(JAVA_FLOAT)).as(what + ": keys").containsExactly(b.keys().toArray(JAVA_FLOAT));
        assertThat(a.values().toArray(JAVA_FLOAT)).as(what + ": values").containsExactly(b.values().toArray(JAVA_FLOAT));
    }

    @Test
    void ropeAppendKvRejectsKeysThatAreNotTheRotatedHeads() {
        CpuBackend cpu = cpu(BackendComparison.variants().findFirst().orElseThrow());
        KvStorage kv = cpu.allocateKv(1, 2, 4, 2, 8);
        Tensor qkv = cpu.allocate(1, 64);
        RopeTable rope = new RopeTable(new float[] {1, 0.5f, 0.25f, 0.125f}, 1f);
        assertThatThrownBy(() -> cpu.ropeAppendKv(qkv, new int[] {3}, rope, 4, 2, 8, kv, 0, 40, 48, new int[] {1}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("kCol 40");
        assertThatThrownBy(() -> cpu.ropeAppendKv(qkv, new int[] {3}, rope, 4, 2, 8, kv, 0, 32, 40, new int[] {1}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("vCol 40");
        assertThatThrownBy(() -> cpu.ropeAppendKv(qkv, new int[] {3}, rope, 4, 2, 8, kv, 0, 32, 48, new int[] {8}))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("slotMapping[0] = 8");
    }

    /** {@code rows} distinct slots out of {@code slotCount}, shuffled: not contiguous, not ascending. */
    static int[] distinctSlots(int rows, int slotCount, long seed) {
        List<Integer> all = new ArrayList<>();
        for (int s = 0; s < slotCount; s++) {
            all.add(s);
        }
        Collections.shuffle(all, new Random(seed));
        return all.subList(0, rows).stream().mapToInt(Integer::intValue).toArray();
    }

    /** Two layers of KV cache with every slot holding random keys and values, so untouched slots show. */
    private static KvStorage prefilledKv(CpuBackend cpu, int numPages, int pageSize, int kvHeads, int headDim,
                                         float[] history) {
        KvStorage kv = cpu.allocateKv(2, numPages, pageSize, kvHeads, headDim);
        int slots = numPages * pageSize;
        int cols = history.length / slots;
        int[] all = new int[slots];
        for (int s = 0; s < slots; s++) {
            all[s] = s;
        }
        Tensor t = upload(cpu, slots, cols, history);
        for (int layer = 0; layer < 2; layer++) {
            cpu.appendKv(kv, layer, t, cols - 2 * kvHeads * headDim, cols - kvHeads * headDim, all);
        }
        return kv;
    }
}
