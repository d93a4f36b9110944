package ai.punica.backend;

import ai.punica.model.TensorData;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The tensor operations a Llama-family forward pass with batched multi-LoRA needs. One implementation
 * is chosen at start-up (reference, CPU, CUDA). All operations act on row-major 2-D tensors; "rows" are
 * the tokens of a step. Activations are float32 on the CPU. Operations may run asynchronously on a
 * device; {@link #download} waits for them.
 *
 * <p>Every operation has a plain scalar definition in {@code ReferenceBackend}; every other backend is
 * tested against it.
 */
public interface Backend extends AutoCloseable {

    String name();

    // ---- memory ---------------------------------------------------------------------------------

    /** A new activation tensor {@code [rows, cols]}; contents undefined. */
    Tensor allocate(int rows, int cols);

    /**
     * A weight from a checkpoint tensor, 2-D {@code [out, in]} or 1-D (becomes {@code [1, n]}). The
     * backend may keep the stored dtype (bf16/fp16/fp32) and may alias the host memory.
     */
    Tensor loadWeight(TensorData weight);

    /**
     * Starts putting {@code weights} on the backend (as {@link #loadWeight} would, one tensor each) without
     * holding up the operations enqueued meanwhile, and returns at once; operations may read the tensors
     * once {@link WeightUpload#isDone()} says so. Adapter slots load this way while steps run. This default
     * loads synchronously, so the upload is done when it is returned.
     */
    default WeightUpload loadWeightsAsync(List<TensorData> weights) {
        List<Tensor> loaded = new ArrayList<>(weights.size());
        try {
            for (TensorData w : weights) {
                loaded.add(loadWeight(w));
            }
        } catch (RuntimeException | Error e) {
            loaded.forEach(this::free);
            throw e;
        }
        return WeightUpload.completed(this, List.copyOf(loaded));
    }

    /**
     * Weights stacked along rows (fused QKV, fused gate/up): the result has the parts' rows in order.
     * 1-D parts (biases) are joined end to end into one {@code [1, Σn]} row instead.
     */
    Tensor concatRows(String name, List<TensorData> parts);

    /** Copies {@code rows·cols} floats (row-major) into an activation tensor. */
    void upload(float[] src, Tensor dst);

    /** Copies an activation tensor to the host as floats (waits for pending work). */
    void download(Tensor src, float[] dst);

    /** Releases a tensor made by this backend; using it afterwards is an error. */
    void free(Tensor tensor);

    // ---- dense operations -----------------------------------------------------------------------

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

    /** {@code out[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[0, o])}; bias may be null. */
    void matmul(Tensor x, Tensor w, Tensor bias, Tensor out);

    /**
     * Rotary embedding, in place, on the first {@code numHeads} heads of size {@code headDim} of every
     * row (for a fused QKV row that is the query and key heads: pass numHeads + numKvHeads).
     */
    void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim);

    /** {@code out[r, i] = silu(gateUp[r, i]) · gateUp[r, I + i]} with {@code I = gateUp.cols / 2}. */
    void swiglu(Tensor gateUp, Tensor out);

    /** {@code out[i] = x[rows[i]]}. */
    void gatherRows(Tensor x, int[] rows, Tensor out);

    // ---- paged KV cache and attention -----------------------------------------------------------

    KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim);

    /** Free and total memory of this backend's own device; empty where it computes in host memory. */
    default Optional<DeviceMemory> deviceMemory() {
        return Optional.empty();
    }

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
     * Causal attention of every query row over its sequence's cached keys and values (which already
     * include this step's rows): queries are columns {@code [0, numHeads·headDim)} of {@code qkv};
     * {@code out[row, h·headDim + j] = Σ_t softmax_t(scale · q_h · k_t) · v_t[j]}.
     */
    void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out);

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    /**
     * Shrink: for each segment i with an adapter, {@code v[r, vCol : vCol + rank] = x[r] · A_{slot}ᵀ} for
     * its rows. Other columns of v, and rows of segments without an adapter, are left undefined.
     */
    void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol);

    /** {@link #sgmvShrink(Tensor, LoraWeights, Segments, Tensor, int)} into the first columns of v. */
    default void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v) {
        sgmvShrink(x, weights, segments, v, 0);
    }

    /**
     * Expand: for each segment i with an adapter,
     * {@code y[r, yCol : yCol + out] += scale_{slot} · v[r, vCol : vCol + rank] · B_{slot}ᵀ}; other rows
     * untouched.
     */
    void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol);

    /** {@link #sgmvExpand(Tensor, int, LoraWeights, Segments, Tensor, int)} from the first columns of v. */
    default void sgmvExpand(Tensor v, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        sgmvExpand(v, 0, weights, segments, y, yCol);
    }

    /**
     * The shrink of several projections that read the same input (q|k|v, gate|up) at once: projection i
     * of {@code group} writes its {@link #sgmvShrink} result into columns {@code [i·w, i·w + rank)} of v,
     * {@code w = v.cols / group.size()} (so v is at least {@code group.size() ·} the largest rank wide).
     * A projection whose adapter slot of a segment is absent skips that segment, as the single op does.
     * This default runs one shrink per projection; backends override it to cover the group in one pass.
     */
    default void sgmvShrinkGroup(Tensor x, List<LoraWeights> group, Segments segments, Tensor v) {
        int w = v.cols() / group.size();
        for (int i = 0; i < group.size(); i++) {
            sgmvShrink(x, group.get(i), segments, v, i * w);
        }
    }

    /**
     * The expand matching {@link #sgmvShrinkGroup}: projection i of {@code group} adds
     * {@code scale · v[r, i·w : i·w + rank] · Bᵀ} into columns {@code [yCols[i], yCols[i] + out_i)} of y,
     * {@code w = v.cols / group.size()}, for the segments where its slot is present. The projections'
     * column ranges in y must not overlap. This default runs one expand per projection.
     */
    default void sgmvExpandGroup(Tensor v, List<LoraWeights> group, Segments segments, Tensor y, int[] yCols) {
        if (yCols.length != group.size()) {
            throw ShapeChecks.fail("sgmvExpandGroup", yCols.length + " output columns for " + group.size() + " projections");
        }
        int w = v.cols() / group.size();
        for (int i = 0; i < group.size(); i++) {
            sgmvExpand(v, i * w, group.get(i), segments, y, yCols[i]);
        }
    }

    /**
     * A projection with the LoRA add-on of every projection of {@code group} (those that read {@code x}):
     * {@code out = x·wᵀ (+ bias)}, then the shrink into the rank-space scratch {@code v} and the expand into
     * {@code out} at {@code cols}: {@link #sgmvShrink}/{@link #sgmvExpand} for one projection,
     * {@link #sgmvShrinkGroup}/{@link #sgmvExpandGroup} for several. This default runs the three in that
     * order; a device backend overlaps the shrink, which reads only x, with the GEMM, with the same result.
     */
    default void matmulLora(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group, Segments segments,
                            Tensor v, int[] cols) {
        matmul(x, w, bias, out);
        if (group.size() == 1) {
            sgmvShrink(x, group.getFirst(), segments, v, 0);
            sgmvExpand(v, 0, group.getFirst(), segments, out, cols[0]);
        } else {
            sgmvShrinkGroup(x, group, segments, v);
            sgmvExpandGroup(v, group, segments, out, cols);
        }
    }

    /**
     * Records and replays whole forward steps (CUDA graphs), or null when this backend has no such
     * mechanism and every step runs operation by operation.
     */
    default StepRecorder stepRecorder() {
        return null;
    }

    /**
     * Device time per operation since the last call, as a printable table, when this backend was asked
     * to record it (the CUDA backend with {@code -Dpunica.cuda.profile=true}); null when it does not.
     */
    default String profileReport() {
        return null;
    }

    // ---- sampling -------------------------------------------------------------------------------

    /**
     * Whether {@link #sample} runs here, next to the logits; when not, the engine downloads the logits
     * and samples on the host.
     */
    default boolean supportsSampling() {
        return false;
    }

    /**
     * One token per row of {@code logits} {@code [rows, vocab]}, as {@link ScalarSampler} defines it
     * for row r of {@code batch}: only the tokens and the log-probabilities asked for come back to the
     * host. {@code logits} is not modified.
     *
     * @throws UnsupportedOperationException where {@link #supportsSampling} is false
     */
    default List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        throw new UnsupportedOperationException("the " + name() + " backend does not sample; download the logits");
    }

    @Override
    void close();
}
