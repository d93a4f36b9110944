package ai.punica.backend;

/**
 * The paged KV cache and attention over it. The fused {@link #ropeAppendKv} is defined by the dense
 * {@link DenseOps#rope}, hence the extension.
 */
public interface AttentionOps extends DenseOps {

    KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim);

    /** Bytes one cached key or value element takes (float32 on the CPU), to size the page pool. */
    default int kvBytesPerElement() {
        return 4;
    }

    /**
     * Writes each row's key (columns {@code [kCol, kCol + kvCols)} of {@code qkv}) and value (columns
     * {@code [vCol, vCol + kvCols)}) into {@code layer} at {@code slotMapping[row]}.
     */
    void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping);

    /**
     * {@link #rope} on the query and key heads of a fused QKV row
     * ({@code rope(qkv, positions, rope, numHeads + numKvHeads, headDim)}), then {@link #appendKv} of the
     * rotated keys and the values: one pass over the rows instead of two. The keys appended are the
     * rotated key heads ({@code kCol = numHeads·headDim}, {@code kv} has numKvHeads heads of headDim) and
     * the values lie after them; {@link ShapeChecks#checkRopeAppendKvLayout} says so when they do not.
     */
    default void ropeAppendKv(Tensor qkv, int[] positions, RopeTable rope, int numHeads, int numKvHeads, int headDim,
                              KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        ShapeChecks.checkRopeAppendKvLayout(numHeads, numKvHeads, headDim, kv, kCol, vCol);
        rope(qkv, positions, rope, numHeads + numKvHeads, headDim);
        appendKv(kv, layer, qkv, kCol, vCol, slotMapping);
    }

    /**
     * {@link #ropeAppendKv(Tensor, int[], RopeTable, int, int, int, KvStorage, int, int, int, int[])} of
     * {@code qkv ⊕ lora}: the q|k|v projection and its LoRA add-on kept apart ({@link LoraOps#matmulLoraApart}),
     * summed as the projection would have stored them (rounded to qkv's dtype) and left in qkv, rotated as the
     * plain op leaves it; null {@code lora}: the plain op. This default sums into qkv first; backends override it
     * to read the add-on in the same pass.
     */
    default void ropeAppendKv(Tensor qkv, Tensor lora, int[] positions, RopeTable rope, int numHeads, int numKvHeads,
                              int headDim, KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        if (lora != null) {
            add(qkv, lora, qkv);
        }
        ropeAppendKv(qkv, positions, rope, numHeads, numKvHeads, headDim, kv, layer, kCol, vCol, slotMapping);
    }

    /**
     * Causal attention of every query row over its sequence's cached keys and values (which already
     * include this step's rows): queries are columns {@code [0, numHeads·headDim)} of {@code qkv};
     * {@code out[row, h·headDim + j] = Σ_t softmax_t(scale · q_h · k_t) · v_t[j]}.
     */
    void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out);
}
