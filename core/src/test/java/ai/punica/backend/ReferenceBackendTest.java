package ai.punica.backend;

import static ai.punica.backend.BackendComparison.download;
import static ai.punica.backend.BackendComparison.upload;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.punica.backend.reference.ReferenceBackend;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The oracle against examples worked out by hand, so that comparing with it means something. */
class ReferenceBackendTest {

    private final ReferenceBackend ref = new ReferenceBackend();

    @AfterEach
    void close() {
        ref.close();
    }

    @Test
    void matmulIsRowTimesWeightRowPlusBias() {
        Tensor x = upload(ref, 2, 2, new float[] {1, 2, 3, 4});
        Tensor w = ref.loadWeight(TensorData.of("w", DType.BF16, 3, 2, new float[] {1, 0.5f, 0.5f, -1, 2, 3}));
        Tensor bias = ref.loadWeight(TensorData.of("b", DType.F32, 1, 3, new float[] {1, 2, 3}));
        Tensor out = ref.allocate(2, 3);
        ref.matmul(x, w, bias, out);
        // [1 2]·[1 .5]=2, [1 2]·[.5 -1]=-1.5, [1 2]·[2 3]=8; [3 4]: 5, -2.5, 18; plus bias 1 2 3
        assertThat(download(ref, out)).containsExactly(3, 0.5f, 11, 6, -0.5f, 21);
    }

    @Test
    void rmsNormOfConstantRowIsWeightTimesValueOverRms() {
        Tensor x = upload(ref, 1, 4, new float[] {3, 3, 3, 3});
        Tensor w = ref.loadWeight(TensorData.of("norm", DType.BF16, 1, 4, new float[] {1, 2, 0.5f, -1}));
        Tensor out = ref.allocate(1, 4);
        // 3 / sqrt(mean(9) + 7) = 3 / 4
        ref.rmsNorm(x, w, 7f, out);
        assertThat(download(ref, out)).containsExactly(0.75f, 1.5f, 0.375f, -0.75f);
    }

    @Test
    void ropeAtPositionZeroIsIdentity() {
        float[] values = BackendComparison.random(new SplittableRandom(11), 2 * 16, 1);
        Tensor x = upload(ref, 2, 16, values);
        RopeTable table = new RopeTable(new float[] {1f, 0.1f, 0.01f, 0.001f}, 1f);
        ref.rope(x, new int[] {0, 0}, table, 2, 8);
        assertThat(download(ref, x)).containsExactly(values);
    }

    @Test
    void ropeRotatesEachPairByPositionTimesFrequencyAndScalesByAttentionFactor() {
        // One pair (x[0], x[1]) = (1, 0.5) rotated by θ = 1 · π/2 and scaled by 2: (−1, 2).
        Tensor x = upload(ref, 1, 2, new float[] {1, 0.5f});
        ref.rope(x, new int[] {1}, new RopeTable(new float[] {(float) (Math.PI / 2)}, 2f), 1, 2);
        float[] out = download(ref, x);
        assertThat(out[0]).isCloseTo(-1f, within(1e-6f));
        assertThat(out[1]).isCloseTo(2f, within(1e-6f));
    }

    @Test
    void swigluIsSiluOfGateTimesUp() {
        Tensor gateUp = upload(ref, 1, 4, new float[] {1, -2, 2, 0.5f});
        Tensor out = ref.allocate(1, 2);
        ref.swiglu(gateUp, out);
        // silu(1) · 2 = 2 / (1 + e^-1); silu(-2) · 0.5 = -1 / (1 + e^2)
        assertThat(download(ref, out)).containsExactly((float) (2 / (1 + Math.exp(-1))), (float) (-1 / (1 + Math.exp(2))));
    }

    @Test
    void attentionIsSoftmaxOverTwoKeysAndCausal() {
        // headDim 2, one head; qkv row = q | k | v. Row 1 scores: q·k0 = 0.5, q·k1 = 0.5 + ln 3, so the
        // softmax is (1/4, 3/4) and out = v0 / 4 + 3 v1 / 4. Row 0 sees only key 0: out = v0.
        float ln3Half = (float) (Math.log(3) / 2);
        Tensor qkv = upload(ref, 2, 6, new float[] {
            0.3f, -0.7f, 0.25f, 0.25f, 4, -4,
            1, 1, 0.25f + ln3Half, 0.25f + ln3Half, 8, 0.5f});
        KvStorage kv = ref.allocateKv(1, 4, 1, 1, 2);
        AttentionBatch batch = new AttentionBatch(new int[] {0, 2}, new int[] {2}, new int[] {0, 2}, new int[] {3, 1},
                new int[] {3, 1}, 1);
        ref.appendKv(kv, 0, qkv, 2, 4, batch.slotMapping());
        Tensor out = ref.allocate(2, 2);
        ref.attention(qkv, kv, 0, batch, new AttentionShape(1, 1, 2, 1f, 0), out);
        float[] o = download(ref, out);
        assertThat(o[0]).isEqualTo(4f);
        assertThat(o[1]).isEqualTo(-4f);
        assertThat(o[2]).isCloseTo(7f, within(1e-5f));
        assertThat(o[3]).isCloseTo(-0.625f, within(1e-6f));

        // A sliding window of 1 leaves each row only its own key.
        ref.attention(qkv, kv, 0, batch, new AttentionShape(1, 1, 2, 1f, 1), out);
        assertThat(download(ref, out)).containsExactly(4, -4, 8, 0.5f);
    }

    @Test
    void groupedQueryHeadsReadKvHeadOfTheirGroup() {
        // 4 query heads, 2 KV heads (heads 0, 1 read KV head 0; heads 2, 3 read KV head 1), headDim 1.
        // Both KV heads have keys 1 and 2; values are 3, 6 for KV head 0 and 30, 60 for KV head 1.
        // q = ln 2: weights ∝ (2, 4) → 1/3 · 3 + 2/3 · 6 = 5. q = −ln 2: ∝ (1/2, 1/4) → 2/3 · 3 + 1/3 · 6 = 4.
        float ln2 = (float) Math.log(2);
        Tensor qkv = upload(ref, 2, 8, new float[] {
            0.1f, 0.2f, 0.3f, 0.4f, 1, 1, 3, 30,
            ln2, -ln2, ln2, -ln2, 2, 2, 6, 60});
        KvStorage kv = ref.allocateKv(1, 2, 2, 2, 1);
        AttentionBatch batch = new AttentionBatch(new int[] {0, 2}, new int[] {2}, new int[] {0, 1}, new int[] {1},
                new int[] {2, 3}, 2);
        ref.appendKv(kv, 0, qkv, 4, 6, batch.slotMapping());
        Tensor out = ref.allocate(2, 4);
        ref.attention(qkv, kv, 0, batch, new AttentionShape(4, 2, 1, 1f, 0), out);
        float[] o = download(ref, out);
        assertThat(o[4]).isCloseTo(5f, within(1e-5f));
        assertThat(o[5]).isCloseTo(4f, within(1e-5f));
        assertThat(o[6]).isCloseTo(50f, within(1e-4f));
        assertThat(o[7]).isCloseTo(40f, within(1e-4f));
    }

    @Test
    void sgmvShrinkThenExpandAddsScaledLowRankProduct() {
        LoraWeights lora = LoraWeights.empty(2);
        lora.a()[1] = ref.loadWeight(TensorData.of("A", DType.F16, 2, 2, new float[] {1, 2, 3, -1}));
        lora.b()[1] = ref.loadWeight(TensorData.of("B", DType.F16, 1, 2, new float[] {1, 0.5f}));
        lora.rank()[1] = 2;
        lora.scale()[1] = 2;
        Tensor x = upload(ref, 2, 2, new float[] {1, 1, 5, 7});
        Tensor v = upload(ref, 2, 2, new float[] {-9, -9, -9, -9});
        Tensor y = upload(ref, 2, 1, new float[] {10, 20});
        Segments segments = new Segments(new int[] {0, 1, 2}, new int[] {1, -1});
        ref.sgmvShrink(x, lora, segments, v);
        ref.sgmvExpand(v, lora, segments, y, 0);
        // v[0] = (1+2, 3-1) = (3, 2); y[0] = 10 + 2 · (3 + 0.5 · 2) = 18; row 1 has no adapter.
        assertThat(download(ref, v)).containsExactly(3, 2, -9, -9);
        assertThat(download(ref, y)).containsExactly(18, 20);
    }

    @Test
    void embeddingGathersTableRowsAsFloat() {
        Tensor table = ref.loadWeight(TensorData.of("emb", DType.BF16, 3, 2, new float[] {1.5f, -2, 0.25f, 8, -3, 0.75f}));
        Tensor out = ref.allocate(3, 2);
        ref.embedding(table, new int[] {2, 0, 2}, out);
        assertThat(download(ref, out)).containsExactly(-3, 0.75f, 1.5f, -2, -3, 0.75f);
    }
}
