package ai.punica.parallel;

import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;

/**
 * How a Llama-family model splits over {@code size} tensor-parallel ranks (Megatron-LM §3, as vLLM does it):
 *
 * <pre>
 *  projection         split            rank r holds (W is [out, in])                 LoRA (A [r, in], B [out, r])
 *  q_proj             column-parallel  rows of its H/N query heads                   A whole, B rows as W
 *  k_proj, v_proj     column-parallel  rows of its KV heads (below)                  A whole, B rows as W
 *  gate_proj, up_proj column-parallel  rows [r·I/N, (r+1)·I/N)                       A whole, B rows as W
 *  o_proj             row-parallel     columns of its H/N query heads                A columns as W, B whole
 *  down_proj          row-parallel     columns [r·I/N, (r+1)·I/N)                    A columns as W, B whole
 *  embeddings, norms, lm_head: replicated (each rank holds the whole tensor)
 * </pre>
 *
 * Column-parallel: the input (the normed hidden state) is whole on every rank, so the LoRA shrink
 * {@code v = x·Aᵀ} is whole there too and the expand writes the rank's output columns. Row-parallel: each rank's
 * input is its slice, so {@code x_r·A_rᵀ} is a partial sum of {@code v}; since the expand is linear,
 * {@code Σ_r (x_r·A_rᵀ)·Bᵀ = (Σ_r x_r·A_rᵀ)·Bᵀ}, and adding each rank's expand into its base partial lets the
 * one all-reduce of the base projection sum the LoRA add-on as well (no reduce of its own).
 *
 * <p>KV heads: with K ≥ N KV heads, rank r holds K/N of them; with K < N (N a multiple of K) each KV head is
 * replicated on N/K ranks and rank r holds KV head {@code r / (N/K)}, the one its H/N query heads read.
 */
public record ShardLayout(ModelConfig model, int size) {

    public ShardLayout {
        String problem = problem(model, size);
        if (problem != null) {
            throw new IllegalArgumentException(problem);
        }
    }

    /** Why {@code model} cannot be split over {@code size} ranks, or null when it can. */
    public static String problem(ModelConfig model, int size) {
        if (size < 1) {
            return "tensor parallel size is " + size + "; it must be 1 or more";
        }
        int heads = model.numHeads();
        int kv = model.numKvHeads();
        int inter = model.intermediateSize();
        if (heads % size != 0) {
            return "tensor parallel size " + size + " does not divide the model's " + heads
                    + " attention heads (num_attention_heads); use a divisor of " + heads;
        }
        if (kv % size != 0 && size % kv != 0) {
            return "tensor parallel size " + size + " and the model's " + kv + " KV heads (num_key_value_heads) "
                    + "neither divide the other; use a divisor or a multiple of " + kv;
        }
        if (inter % size != 0) {
            return "tensor parallel size " + size + " does not divide the model's intermediate_size " + inter
                    + "; use a divisor of it";
        }
        return null;
    }

    /** The config rank shards compute with: heads, KV heads and intermediate size of one shard. */
    public ModelConfig shardConfig() {
        ModelConfig c = model;
        return new ModelConfig(c.modelType(), c.vocabSize(), c.hiddenSize(), c.intermediateSize() / size,
                c.numLayers(), c.numHeads() / size, kvHeadsPerRank(), c.headDim(), c.maxPositionEmbeddings(),
                c.rmsNormEps(), c.ropeTheta(), c.ropeScaling(), c.attentionBias(), c.mlpBias(),
                c.tieWordEmbeddings(), c.slidingWindow(), c.bosTokenId(), c.eosTokenIds(), c.torchDtype());
    }

    /** KV heads each rank holds: K/N, or 1 when they are replicated (K < N). */
    public int kvHeadsPerRank() {
        return Math.max(1, model.numKvHeads() / size);
    }

    /** The first KV head rank {@code rank} holds. */
    public int firstKvHead(int rank) {
        int kv = model.numKvHeads();
        return kv >= size ? rank * (kv / size) : rank / (size / kv);
    }

    /** Whether {@code p} is split by its output features (else by its input features). */
    public static boolean columnParallel(Projection p) {
        return p != Projection.O_PROJ && p != Projection.DOWN_PROJ;
    }

    /**
     * The range of features of projection {@code p} that rank {@code rank} holds, as {start, count}: output
     * features (W's rows) of a column-parallel projection, input features (W's columns) of a row-parallel one.
     */
    public int[] featureRange(Projection p, int rank) {
        int hd = model.headDim();
        return switch (p) {
            case Q_PROJ, O_PROJ -> {
                int per = model.numHeads() / size;
                yield new int[] {rank * per * hd, per * hd};
            }
            case K_PROJ, V_PROJ -> new int[] {firstKvHead(rank) * hd, kvHeadsPerRank() * hd};
            case GATE_PROJ, UP_PROJ, DOWN_PROJ -> {
                int per = model.intermediateSize() / size;
                yield new int[] {rank * per, per};
            }
        };
    }
}
