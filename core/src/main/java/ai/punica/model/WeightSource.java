package ai.punica.model;

import ai.punica.backend.TensorData;

/**
 * Where {@link LlamaModel#load} takes its weights from, by HuggingFace tensor name
 * ({@code "model.layers.0.self_attn.q_proj.weight"}): a {@link Checkpoint} on disk, or weights made in
 * memory (random weights of a real model's shape for benchmarks).
 */
public interface WeightSource {

    /** The tensor called {@code name}; {@link ModelFormatException} saying where it was looked for if absent. */
    TensorData get(String name);

    boolean contains(String name);
}
