package ai.punica.model;

import ai.punica.backend.Tensor;

/**
 * What makes a {@link LlamaModel} one rank of a tensor-parallel group (Megatron-LM §3): its weights are the
 * rank's shard ({@link #shardConfig}'s heads, KV heads and intermediate size), q|k|v and gate|up are
 * column-parallel (each rank computes its slice of the outputs), o and down are row-parallel (each rank
 * computes a partial sum over its slice of the inputs, which {@link #allReduce} adds up). The LoRA add-on of
 * a row-parallel projection is added into the base partial before the reduce, so it costs no reduce of
 * its own. {@code ai.punica.parallel} builds these; the model only calls them.
 */
public interface TensorParallelRank {

    /** This rank's index in the group, 0 for the rank whose logits are sampled. */
    int rank();

    /** Ranks in the group. */
    int size();

    /**
     * The shapes this rank computes with: the full model's config with numHeads, numKvHeads and
     * intermediateSize of one shard. The model still reports the full config as its own.
     */
    ModelConfig shardConfig();

    /** {@code partial = Σ over ranks of partial}, in place, the same sum on every rank; all ranks call it in step. */
    void allReduce(Tensor partial);

    /** Whether this rank computes the logits (lm_head is replicated; only rank 0's are read). */
    default boolean computesLogits() {
        return rank() == 0;
    }

    /** Called by {@link LlamaModel#forwardLogits} before the step: the leader starts its peers on the batch. */
    default void stepStarting(ForwardBatch batch) {
    }

    /**
     * Called by {@link LlamaModel#forwardLogits} after the step, also when it failed ({@code failure} not
     * null): the leader waits for its peers and throws what they threw.
     */
    default void stepFinished(Throwable failure) {
    }

    /** Called by {@link LlamaModel#allocateKv}: the leader has its peers allocate their KV shards alike. */
    default void kvAllocated(int numPages, int pageSize) {
    }
}
