package ai.punica.backend;

/**
 * The tensor operations a Llama-family forward pass with batched multi-LoRA needs. One implementation
 * is chosen at start-up (reference, CPU, CUDA). All operations act on row-major 2-D tensors; "rows" are
 * the tokens of a step. Activations are float32 on the CPU. Operations may run asynchronously on a
 * device; {@link #download} waits for them.
 *
 * <p>The operations are grouped by concern in the interfaces this one joins: {@link TensorMemory},
 * {@link DenseOps}, {@link AttentionOps}, {@link LoraOps}, {@link SamplingOps} and the optional
 * {@link DeviceCapabilities}. Code that needs one concern takes that interface.
 *
 * <p>Every operation has a plain scalar definition in {@code ReferenceBackend}; every other backend is
 * tested against it.
 */
public interface Backend extends TensorMemory, DenseOps, AttentionOps, LoraOps, SamplingOps, DeviceCapabilities,
        AutoCloseable {

    @Override
    String name();

    @Override
    void close();
}
