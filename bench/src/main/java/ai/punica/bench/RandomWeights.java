package ai.punica.bench;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.model.ModelConfig;
import ai.punica.model.ModelFormatException;
import ai.punica.model.Projection;
import ai.punica.model.WeightSource;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Seeded random bf16 weights of a Llama-shaped model, made on demand (one tensor at a time, so a 7B
 * model needs no more host memory than its largest tensor). Linear weights and embeddings are uniform
 * with standard deviation {@value #STD} (transformers' {@code initializer_range}), norm weights uniform
 * in [0.9, 1.1]: activations stay finite through every layer, and nothing is timed on zeros.
 */
final class RandomWeights implements WeightSource {
    static final double STD = 0.02;
    private static final int CHUNK = 1 << 20;

    private final ModelConfig config;
    private final long seed;

    RandomWeights(ModelConfig config, long seed) {
        this.config = config;
        this.seed = seed;
    }

    @Override
    public boolean contains(String name) {
        return shape(name) != null;
    }

    @Override
    public TensorData get(String name) {
        long[] shape = shape(name);
        if (shape == null) {
            throw new ModelFormatException("random weights of " + config.modelType() + " have no tensor '" + name + "'");
        }
        boolean norm = name.endsWith("norm.weight");
        return uniform(name, shape, norm ? 1.0 : 0.0, norm ? 0.1 : STD * Math.sqrt(3), seed ^ name.hashCode() * 0x9E3779B97F4A7C15L);
    }

    /** Every tensor of the model in a HF Llama checkpoint's names (lm_head unless the embeddings are tied). */
    List<String> tensorNames() {
        List<String> names = new ArrayList<>();
        names.add("model.embed_tokens.weight");
        for (int l = 0; l < config.numLayers(); l++) {
            names.add("model.layers." + l + ".input_layernorm.weight");
            names.add("model.layers." + l + ".post_attention_layernorm.weight");
            for (Projection p : Projection.values()) {
                names.add(p.weightName(l));
            }
        }
        names.add("model.norm.weight");
        if (!config.tieWordEmbeddings()) {
            names.add("lm_head.weight");
        }
        return names;
    }

    /** The shape of tensor {@code name}; null if the model has none of that name. */
    long[] shapeOf(String name) {
        long[] shape = shape(name);
        return shape == null ? null : shape.clone();
    }

    /** A bf16 tensor of {@code shape} with elements uniform in [center - halfWidth, center + halfWidth]. */
    static TensorData uniform(String name, long[] shape, double center, double halfWidth, long seed) {
        long count = 1;
        for (long d : shape) {
            count *= d;
        }
        final long n = count;
        short[] values = new short[Math.toIntExact(n)];
        int chunks = (int) ((n + CHUNK - 1) / CHUNK);
        IntStream.range(0, chunks).parallel().forEach(c -> {
            long state = mix(seed + c * 0xD1B54A32D192ED03L);
            int end = (int) Math.min(n, (long) (c + 1) * CHUNK);
            for (int i = c * CHUNK; i < end; i++) {
                // xorshift64*, top 24 bits → [0, 1) → [-1, 1) → bf16 by truncation of the float's low half
                state ^= state >>> 12;
                state ^= state << 25;
                state ^= state >>> 27;
                float u = ((state * 0x2545F4914F6CDD1DL) >>> 40) * 0x1.0p-23f - 1f;
                values[i] = (short) (Float.floatToRawIntBits((float) (center + halfWidth * u)) >>> 16);
            }
        });
        return new TensorData(name, DType.BF16, shape, MemorySegment.ofArray(values));
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z ^= z >>> 31;
        return z == 0 ? 1 : z;
    }

    private long[] shape(String name) {
        int hidden = config.hiddenSize();
        switch (name) {
            case "model.embed_tokens.weight", "lm_head.weight" -> {
                return new long[] {config.vocabSize(), hidden};
            }
            case "model.norm.weight" -> {
                return new long[] {hidden};
            }
            default -> {
            }
        }
        String prefix = "model.layers.";
        if (!name.startsWith(prefix)) {
            return null;
        }
        int dot = name.indexOf('.', prefix.length());
        int layer;
        try {
            layer = Integer.parseInt(name.substring(prefix.length(), dot));
        } catch (RuntimeException e) {
            return null;
        }
        if (layer < 0 || layer >= config.numLayers()) {
            return null;
        }
        String rest = name.substring(dot + 1);
        if (rest.equals("input_layernorm.weight") || rest.equals("post_attention_layernorm.weight")) {
            return new long[] {hidden};
        }
        for (Projection p : Projection.values()) {
            if (name.equals(p.weightName(layer))) {
                return new long[] {p.outFeatures(config), p.inFeatures(config)};
            }
        }
        return null;
    }
}
