package ai.punica.parallel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.model.Checkpoint;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Which rows and columns of which tensor each rank holds ({@link ShardLayout}, {@link ShardedWeights}). */
class ShardingTest {

    private static ModelConfig fixture() {
        return ModelConfig.load(Fixtures.model().resolve("config.json")); // 8 heads, 2 KV heads × 32, I = 704
    }

    @Test
    void sizesThatDoNotSplitTheModelAreRefusedNamingTheField() {
        ModelConfig c = fixture();
        assertThat(ShardLayout.problem(c, 1)).isNull();
        assertThat(ShardLayout.problem(c, 2)).isNull();
        assertThat(ShardLayout.problem(c, 4)).isNull();
        assertThat(ShardLayout.problem(c, 8)).isNull();
        assertThat(ShardLayout.problem(c, 3)).isEqualTo("tensor parallel size 3 does not divide the model's 8 "
                + "attention heads (num_attention_heads); use a divisor of 8");
        assertThat(ShardLayout.problem(c, 0)).isEqualTo("tensor parallel size is 0; it must be 1 or more");
        assertThatThrownBy(() -> new ShardLayout(c, 16)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("16 does not divide the model's 8 attention heads");
        ModelConfig sixKv = withShape(c, 12, 6, 704);
        assertThat(ShardLayout.problem(sixKv, 4)).isEqualTo("tensor parallel size 4 and the model's 6 KV heads "
                + "(num_key_value_heads) neither divide the other; use a divisor or a multiple of 6");
        ModelConfig oddMlp = withShape(c, 8, 2, 700);
        assertThat(ShardLayout.problem(oddMlp, 8)).isEqualTo("tensor parallel size 8 does not divide the model's "
                + "intermediate_size 700; use a divisor of it");
    }

    @Test
    void kvHeadsAreSplitWhenTheyDivideAndReplicatedOtherwise() {
        ModelConfig c = fixture();
        ShardLayout two = new ShardLayout(c, 2);
        assertThat(two.shardConfig().numHeads()).isEqualTo(4);
        assertThat(two.shardConfig().numKvHeads()).isEqualTo(1);
        assertThat(two.shardConfig().intermediateSize()).isEqualTo(352);
        assertThat(two.shardConfig().hiddenSize()).isEqualTo(256);
        assertThat(two.featureRange(Projection.K_PROJ, 1)).containsExactly(32, 32);
        // 4 ranks over 2 KV heads: ranks 0, 1 read KV head 0 (query heads 0-3), ranks 2, 3 KV head 1 (4-7).
        ShardLayout four = new ShardLayout(c, 4);
        assertThat(four.shardConfig().numKvHeads()).isEqualTo(1);
        int[] kvHead = new int[4];
        for (int r = 0; r < 4; r++) {
            kvHead[r] = four.featureRange(Projection.V_PROJ, r)[0] / 32;
            int firstQueryHead = four.featureRange(Projection.Q_PROJ, r)[0] / 32;
            assertThat(firstQueryHead / c.kvGroupSize()).as("rank %d's query heads read its KV head", r)
                    .isEqualTo(kvHead[r]);
        }
        assertThat(kvHead).containsExactly(0, 0, 1, 1);
        assertThat(four.featureRange(Projection.O_PROJ, 3)).containsExactly(3 * 64, 64);
        assertThat(four.featureRange(Projection.DOWN_PROJ, 2)).containsExactly(2 * 176, 176);
    }

    @Test
    void columnParallelShardsAreViewsOfTheMappingAndRowParallelShardsHoldOnlyTheirColumns() {
        ShardLayout layout = new ShardLayout(fixture(), 2);
        try (Checkpoint ckpt = Checkpoint.open(Fixtures.model())) {
            ShardedWeights rank1 = new ShardedWeights(ckpt, layout, 1);
            TensorData q = ckpt.get("model.layers.2.self_attn.q_proj.weight");
            TensorData q1 = rank1.get("model.layers.2.self_attn.q_proj.weight");
            assertThat(q1.shape()).containsExactly(128, 256);
            assertThat(q1.data().isNative()).as("a view of the mapped file").isTrue();
            assertThat(q1.data().address()).isEqualTo(q.data().address() + 128L * 256 * 2);
            assertThat(q1.getFloat(5 * 256 + 7)).isEqualTo(q.getFloat((128 + 5) * 256 + 7));

            TensorData down = ckpt.get("model.layers.2.mlp.down_proj.weight");
            TensorData down1 = rank1.get("model.layers.2.mlp.down_proj.weight");
            assertThat(down1.shape()).containsExactly(256, 352);
            assertThat(down1.data().byteSize()).as("only the rank's columns").isEqualTo(256L * 352 * 2);
            for (int row : new int[] {0, 17, 255}) {
                for (int col : new int[] {0, 100, 351}) {
                    assertThat(down1.getFloat((long) row * 352 + col)).isEqualTo(down.getFloat((long) row * 704 + 352 + col));
                }
            }
            TensorData norm = ckpt.get("model.layers.2.input_layernorm.weight");
            assertThat(rank1.get("model.layers.2.input_layernorm.weight").data().address())
                    .as("norms are replicated as they are").isEqualTo(norm.data().address());
            assertThat(rank1.get("lm_head.weight").shape()).containsExactly(1024, 256);
        }
    }

    @Test
    void loraMatricesSplitWithTheirProjection() {
        ShardLayout layout = new ShardLayout(fixture(), 4);
        Random rnd = new Random(16);
        String qA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
        String qB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
        String oA = "base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight";
        String oB = "base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight";
        TensorData a = random(qA, 8, 256, rnd);
        TensorData b = random(qB, 256, 8, rnd);
        TensorData oa = random(oA, 8, 256, rnd);
        TensorData ob = random(oB, 256, 8, rnd);
        // q (column-parallel): A whole, B the rank's 64 output rows
        assertThat(ShardedWeights.shard(a, layout, 2)).isSameAs(a);
        TensorData b2 = ShardedWeights.shard(b, layout, 2);
        assertThat(b2.shape()).containsExactly(64, 8);
        assertThat(b2.getFloat(3 * 8 + 1)).isEqualTo(b.getFloat((128 + 3) * 8 + 1));
        // o (row-parallel): A the rank's 64 input columns, B whole
        TensorData oa2 = ShardedWeights.shard(oa, layout, 2);
        assertThat(oa2.shape()).containsExactly(8, 64);
        assertThat(oa2.getFloat(5 * 64 + 9)).isEqualTo(oa.getFloat(5 * 256 + 128 + 9));
        assertThat(ShardedWeights.shard(ob, layout, 2)).isSameAs(ob);
    }

    private static TensorData random(String name, int rows, int cols, Random rnd) {
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return TensorData.of(name, DType.F32, rows, cols, v);
    }

    private static ModelConfig withShape(ModelConfig c, int heads, int kvHeads, int inter) {
        return new ModelConfig(c.modelType(), c.vocabSize(), c.hiddenSize(), inter, c.numLayers(), heads, kvHeads,
                c.headDim(), c.maxPositionEmbeddings(), c.rmsNormEps(), c.ropeTheta(), c.ropeScaling(),
                c.attentionBias(), c.mlpBias(), c.tieWordEmbeddings(), c.slidingWindow(), c.bosTokenId(),
                c.eosTokenIds(), c.torchDtype());
    }
}
