package ai.punica.backend;

/**
 * A 2-D row-major tensor owned by a {@link Backend}. Vectors (norm weights, biases) are {@code [1, n]}.
 * Weights follow the HuggingFace layout {@code [outFeatures, inFeatures]}. A tensor is only ever passed
 * back to the backend that made it.
 */
public interface Tensor {
    int rows();

    int cols();

    DType dtype();

    /** A view of rows {@code [0, n)} sharing storage (activations are allocated at the step maximum). */
    Tensor firstRows(int n);
}
