package ai.punica.backend;

import java.util.ArrayList;
import java.util.List;

/**
 * The memory part of a {@link Backend}: tensors made, filled from checkpoints or the host, read back and
 * released. Activations are row-major float32 {@code [rows, cols]}; weights may keep their stored dtype.
 */
public interface TensorMemory {

    /** A new activation tensor {@code [rows, cols]}; contents undefined. */
    Tensor allocate(int rows, int cols);

    /**
     * A new tensor for the logits {@code [rows, vocab]}, the lm_head's output: float32 on every backend, so
     * that log-probabilities and greedy choices are not on a narrower grid where a backend keeps its other
     * activations narrower (CUDA's bf16). {@link #allocate} where activations already are float32.
     */
    default Tensor allocateLogits(int rows, int cols) {
        return allocate(rows, cols);
    }

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
}
