package ai.punica.backend.reference;

import static ai.punica.backend.BackendComparison.download;
import static ai.punica.backend.BackendComparison.random;
import static ai.punica.backend.BackendComparison.upload;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The reference backend's fused operations (the {@code Backend} defaults) are exactly the separate
 * operations: {@code addRmsNorm} = {@code add} then {@code rmsNorm}, {@code ropeAppendKv} =
 * {@code rope} then {@code appendKv}; seeded random data, GQA, shuffled slots.
 */
class ReferenceFusedOpsTest {

    private final ReferenceBackend ref = new ReferenceBackend();

    @Test
    void addRmsNormUpdatesTheResidualAndNormsTheSum() {
        SplittableRandom random = new SplittableRandom(1);
        for (int[] shape : new int[][] {{1, 5}, {6, 64}, {3, 1000}}) {
            int rows = shape[0];
            int cols = shape[1];
            float[] x = random(random, rows * cols, 2);
            float[] delta = random(random, rows * cols, 1);
            Tensor weight = ref.loadWeight(TensorData.of("norm", DType.BF16, 1, cols, random(random, cols, 1.5)));

            Tensor xSeparate = upload(ref, rows, cols, x);
            Tensor outSeparate = ref.allocate(rows, cols);
            ref.add(xSeparate, upload(ref, rows, cols, delta), xSeparate);
            ref.rmsNorm(xSeparate, weight, 1e-6f, outSeparate);

            Tensor xFused = upload(ref, rows, cols, x);
            Tensor outFused = ref.allocate(rows, cols);
            ref.addRmsNorm(xFused, upload(ref, rows, cols, delta), weight, 1e-6f, outFused);
            assertThat(download(ref, xFused)).containsExactly(download(ref, xSeparate));
            assertThat(download(ref, outFused)).containsExactly(download(ref, outSeparate));
            float[] sum = download(ref, xFused);
            assertThat(sum[0]).isEqualTo(x[0] + delta[0]);
        }
    }

    @Test
    void ropeAppendKvRotatesQueriesAndKeysAndCachesTheRotatedKeys() {
        SplittableRandom random = new SplittableRandom(2);
        int rows = 5;
        int heads = 4;
        int kvHeads = 2;
        int headDim = 16;
        int qCols = heads * headDim;
        int kvCols = kvHeads * headDim;
        int cols = qCols + 2 * kvCols;
        float[] invFreq = new float[headDim / 2];
        for (int i = 0; i < invFreq.length; i++) {
            invFreq[i] = (float) Math.pow(10000, -2.0 * i / headDim);
        }
        RopeTable rope = new RopeTable(invFreq, 1.2f);
        float[] qkv = random(random, rows * cols, 2);
        int[] positions = {0, 17, 3, 4095, 100_000};
        int[] slots = {9, 2, 14, 0, 7};

        ReferenceKvStorage separateKv = (ReferenceKvStorage) ref.allocateKv(2, 4, 4, kvHeads, headDim);
        Tensor separate = upload(ref, rows, cols, qkv);
        ref.rope(separate, positions, rope, heads + kvHeads, headDim);
        ref.appendKv(separateKv, 1, separate, qCols, qCols + kvCols, slots);

        ReferenceKvStorage fusedKv = (ReferenceKvStorage) ref.allocateKv(2, 4, 4, kvHeads, headDim);
        Tensor fused = upload(ref, rows, cols, qkv);
        ref.ropeAppendKv(fused, positions, rope, heads, kvHeads, headDim, fusedKv, 1, qCols, qCols + kvCols, slots);

        float[] rotated = download(ref, fused);
        assertThat(rotated).containsExactly(download(ref, separate));
        assertThat(fusedKv.keys()[1]).containsExactly(separateKv.keys()[1]);
        assertThat(fusedKv.values()[1]).containsExactly(separateKv.values()[1]);
        // Row 3's key head 1, rotated, sits at slot 0; its values are the unrotated value columns.
        for (int c = 0; c < kvCols; c++) {
            assertThat(fusedKv.keys()[1][c]).isEqualTo(rotated[3 * cols + qCols + c]);
            assertThat(fusedKv.values()[1][c]).isEqualTo(qkv[3 * cols + qCols + kvCols + c]);
        }
    }

    @Test
    void ropeAppendKvRejectsAMismatchedCache() {
        KvStorage kv = ref.allocateKv(1, 2, 4, 1, 8);
        Tensor qkv = ref.allocate(1, 48);
        RopeTable rope = new RopeTable(new float[] {1, 0.5f, 0.25f, 0.125f}, 1f);
        assertThatThrownBy(() -> ref.ropeAppendKv(qkv, new int[] {1}, rope, 4, 2, 8, kv, 0, 32, 40, new int[] {0}))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("ropeAppendKv: 2 KV heads of 8 but the KV storage has 1 of 8");
    }
}
