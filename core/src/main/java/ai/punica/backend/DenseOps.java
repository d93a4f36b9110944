package ai.punica.backend;

/**
 * The dense per-row operations of a Llama layer ({@link Backend}'s first concern): embedding, norms,
 * projections, rotary embedding, the gated MLP activation. Row-major 2-D tensors, one row per token.
 */
public interface DenseOps {

    /** {@code out[r] = table[tokenIds[r]]}. */
    void embedding(Tensor table, int[] tokenIds, Tensor out);

    /** {@code out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight}, accumulated in float32. */
    void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out);

    /** {@code out = a + b} element-wise; {@code out} may be {@code a}. */
    void add(Tensor a, Tensor b, Tensor out);

    /**
     * The residual add fused with the norm after it: {@code x = x + delta} (in place: x is the residual
     * stream), then {@code out = rmsNorm(x)·weight} over x as stored (on a bf16 device the rounded sum), so
     * the result is that of {@link #add} then {@link #rmsNorm}. Backends override it to read x once.
     */
    default void addRmsNorm(Tensor x, Tensor delta, Tensor weight, float eps, Tensor out) {
        add(x, delta, x);
        rmsNorm(x, weight, eps, out);
    }

    /**
     * {@link #addRmsNorm(Tensor, Tensor, Tensor, float, Tensor)} of {@code delta ⊕ lora}: a projection's output
     * and its LoRA add-on kept apart ({@link LoraOps#matmulLoraApart}), summed as the projection would have stored
     * them (rounded to delta's dtype), so {@code x = x + (delta + lora)}. Null {@code lora}: the plain op. This
     * default sums into delta first; backends override it to read the add-on in the same pass.
     */
    default void addRmsNorm(Tensor x, Tensor delta, Tensor lora, Tensor weight, float eps, Tensor out) {
        if (lora != null) {
            add(delta, lora, delta);
        }
        addRmsNorm(x, delta, weight, eps, out);
    }

    /** Every element of {@code t} set to zero. */
    void zero(Tensor t);

    /** {@code out[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[0, o])}; bias may be null. */
    void matmul(Tensor x, Tensor w, Tensor bias, Tensor out);

    /**
     * Rotary embedding, in place, on the first {@code numHeads} heads of size {@code headDim} of every
     * row (for a fused QKV row that is the query and key heads: pass numHeads + numKvHeads).
     */
    void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim);

    /** {@code out[r, i] = silu(gateUp[r, i]) · gateUp[r, I + i]} with {@code I = gateUp.cols / 2}. */
    void swiglu(Tensor gateUp, Tensor out);

    /**
     * {@link #swiglu(Tensor, Tensor)} of {@code gateUp ⊕ lora} (the gate|up projection and its add-on kept apart,
     * summed as the projection would have stored them); null {@code lora}: the plain op. This default sums into
     * gateUp first.
     */
    default void swiglu(Tensor gateUp, Tensor lora, Tensor out) {
        if (lora != null) {
            add(gateUp, lora, gateUp);
        }
        swiglu(gateUp, out);
    }

    /** {@code out[i] = x[rows[i]]}. */
    void gatherRows(Tensor x, int[] rows, Tensor out);
}
