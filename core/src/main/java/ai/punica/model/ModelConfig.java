package ai.punica.model;

import ai.punica.backend.RopeTable;
import ai.punica.json.JsonField;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * {@code config.json} of a Llama-family model: model_type llama, mistral or qwen2 (LlamaForCausalLM,
 * MistralForCausalLM, Qwen2ForCausalLM). Absent optional keys take the defaults of the matching
 * transformers config class, so a config means here what it means to transformers. The five dimensions
 * that fix the weight shapes (vocab_size, hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads) are required: transformers' 7B-sized defaults would only hide a broken file.
 *
 * @param ropeScaling    null = plain RoPE
 * @param attentionBias  q, k and v projections carry a bias (qwen2); o_proj never does here
 * @param mlpBias        gate, up and down projections carry a bias (llama mlp_bias)
 * @param slidingWindow  attention window in tokens (mistral), 0 = full attention
 * @param bosTokenId     -1 if absent
 * @param eosTokenIds    empty if absent (generation_config.json may supply them)
 * @param torchDtype     "bfloat16", "float16", "float32", ...; "float32" if absent (what transformers loads by default)
 */
public record ModelConfig(String modelType, int vocabSize, int hiddenSize, int intermediateSize, int numLayers,
        int numHeads, int numKvHeads, int headDim, int maxPositionEmbeddings, float rmsNormEps, double ropeTheta,
        RopeScaling ropeScaling, boolean attentionBias, boolean mlpBias, boolean tieWordEmbeddings, int slidingWindow,
        int bosTokenId, List<Integer> eosTokenIds, String torchDtype) {

    public static final Set<String> MODEL_TYPES = Set.of("llama", "mistral", "qwen2");
    public static final Set<String> ARCHITECTURES = Set.of("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM");
    private static final String ROPE_TYPES = "default, linear, llama3, yarn";

    public ModelConfig {
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    /** Query heads per KV head (GQA group size). */
    public int kvGroupSize() {
        return numHeads / numKvHeads;
    }

    public static ModelConfig load(Path configJson) {
        return from(JsonField.read(configJson, ModelFormatException::new));
    }

    /** Parses config.json text; {@code sourceName} names it in error messages. */
    public static ModelConfig parse(String json, String sourceName) {
        return from(JsonField.parse(json, sourceName, ModelFormatException::new));
    }

    private static ModelConfig from(JsonField f) {
        String modelType = f.requireOneOf("model_type", MODEL_TYPES,
                "Punica-J serves the Llama family only: llama, mistral, qwen2");
        List<String> architectures = f.stringOrStringList("architectures");
        if (architectures != null && architectures.stream().noneMatch(ARCHITECTURES::contains)) {
            throw f.error("architectures", "is " + architectures + "; supported: LlamaForCausalLM, MistralForCausalLM, "
                    + "Qwen2ForCausalLM (a causal LM head is needed to generate text)");
        }
        String hiddenAct = f.string("hidden_act", "silu");
        if (!hiddenAct.equals("silu") && !hiddenAct.equals("swish")) {
            throw f.error("hidden_act", "is '" + hiddenAct + "'; Punica-J implements the SwiGLU MLP (silu) only");
        }
        if (f.has("quantization_config")) {
            throw f.error("quantization_config", "is present; quantized checkpoints are not supported, "
                    + "use an unquantized bf16/fp16/fp32 model");
        }
        if (f.has("partial_rotary_factor") && f.doubleValue("partial_rotary_factor", 1.0) != 1.0) {
            throw f.error("partial_rotary_factor", "is " + f.doubleValue("partial_rotary_factor", 1.0)
                    + "; only full rotary embeddings (1.0) are supported");
        }

        int vocab = positive(f, "vocab_size", f.requiredInt("vocab_size"));
        int hidden = positive(f, "hidden_size", f.requiredInt("hidden_size"));
        int intermediate = positive(f, "intermediate_size", f.requiredInt("intermediate_size"));
        int layers = positive(f, "num_hidden_layers", f.requiredInt("num_hidden_layers"));
        int heads = positive(f, "num_attention_heads", f.requiredInt("num_attention_heads"));
        // MistralConfig defaults to 8 KV heads; LlamaConfig and Qwen2Config to one per query head.
        int kvHeads = positive(f, "num_key_value_heads",
                f.intValue("num_key_value_heads", modelType.equals("mistral") ? 8 : heads));
        if (heads % kvHeads != 0) {
            throw f.error("num_key_value_heads", "is " + kvHeads + ", which does not divide num_attention_heads "
                    + heads + "; grouped-query attention needs a whole number of query heads per KV head");
        }
        int headDim;
        if (f.has("head_dim")) {
            headDim = positive(f, "head_dim", f.requiredInt("head_dim"));
        } else {
            if (hidden % heads != 0) {
                throw f.error("hidden_size", "is " + hidden + ", not divisible by num_attention_heads " + heads
                        + ", and head_dim is not given; add head_dim to config.json");
            }
            headDim = hidden / heads;
        }
        if (headDim % 2 != 0) {
            throw f.error("head_dim", "is " + headDim + "; rotary embeddings need an even head dimension");
        }
        int maxPositions = positive(f, "max_position_embeddings", f.intValue("max_position_embeddings",
                switch (modelType) {
                    case "mistral" -> 4096 * 32;
                    case "qwen2" -> 32768;
                    default -> 2048;
                }));
        double eps = f.doubleValue("rms_norm_eps", 1e-6);
        if (!(eps > 0)) {
            throw f.error("rms_norm_eps", "is " + eps + "; expected a small positive number such as 1e-5");
        }

        // Rope: transformers 5 writes rope_parameters (with rope_theta inside); earlier versions rope_theta +
        // rope_scaling.
        String ropeField = f.has("rope_parameters") ? "rope_parameters" : "rope_scaling";
        JsonField rope = f.object(ropeField);
        double ropeTheta = f.doubleValue("rope_theta", 10000.0);
        if (rope != null && rope.has("rope_theta")) {
            ropeTheta = rope.requiredDouble("rope_theta");
        }
        if (!(ropeTheta > 1)) {
            throw f.error(rope != null && rope.has("rope_theta") ? ropeField + ".rope_theta" : "rope_theta",
                    "is " + ropeTheta + "; expected the RoPE base, e.g. 10000 or 500000");
        }
        RopeScaling ropeScaling = rope == null ? null : parseRope(rope, maxPositions);

        boolean attentionBias = false;
        boolean mlpBias = false;
        if (modelType.equals("llama")) {
            if (f.boolValue("attention_bias", false)) {
                throw f.error("attention_bias", "is true; Punica-J supports Llama without attention biases "
                        + "(Llama puts one on o_proj as well); qwen2 q/k/v biases are supported");
            }
            mlpBias = f.boolValue("mlp_bias", false);
        } else if (modelType.equals("qwen2")) {
            attentionBias = true; // Qwen2Attention: q, k, v with bias, o_proj without, whatever the config says
        }

        int slidingWindow = 0;
        if (modelType.equals("mistral")) {
            // Absent means MistralConfig's default 4096; null (Mistral v0.2+) means full attention.
            slidingWindow = f.present("sliding_window")
                    ? (f.has("sliding_window") ? positive(f, "sliding_window", f.requiredInt("sliding_window")) : 0)
                    : 4096;
        } else if (modelType.equals("qwen2") && f.boolValue("use_sliding_window", false)) {
            throw f.error("use_sliding_window", "is true; Qwen2's per-layer sliding window "
                    + "(max_window_layers) is not supported; set it to false");
        }

        String dtype = f.string("torch_dtype", f.string("dtype", "float32"));
        return new ModelConfig(modelType, vocab, hidden, intermediate, layers, heads, kvHeads, headDim, maxPositions,
                (float) eps, ropeTheta, ropeScaling, attentionBias, mlpBias, f.boolValue("tie_word_embeddings", false),
                slidingWindow, f.intValue("bos_token_id", -1), f.intOrIntList("eos_token_id"), dtype);
    }

    private static RopeScaling parseRope(JsonField rope, int maxPositions) {
        for (String key : rope.keys()) {
            JsonNode node = rope.node(key);
            if (node != null && node.isObject()) {
                throw rope.error(key, "is an object: per-layer-type rope parameters are not supported by the "
                        + "Llama family; expected rope_type, factor, ... directly");
            }
        }
        String type = rope.string("rope_type", rope.string("type", "default"));
        String typeKey = rope.has("rope_type") ? "rope_type" : "type";
        return switch (type) {
            case "default" -> null;
            case "linear" -> RopeScaling.linear(factor(rope, rope.requiredDouble("factor")));
            case "llama3" -> {
                double factor = factor(rope, rope.requiredDouble("factor"));
                double low = rope.requiredDouble("low_freq_factor");
                double high = rope.requiredDouble("high_freq_factor");
                int original = rope.requiredInt("original_max_position_embeddings");
                if (!(low > 0) || !(high > low)) {
                    throw rope.error("high_freq_factor", "is " + high + " with low_freq_factor " + low
                            + "; llama3 rope needs 0 < low_freq_factor < high_freq_factor (Llama 3.1: 1 and 4)");
                }
                if (original <= 0) {
                    throw rope.error("original_max_position_embeddings", "is " + original + "; expected e.g. 8192");
                }
                yield RopeScaling.llama3(factor, low, high, original);
            }
            case "yarn" -> {
                int original = rope.intValue("original_max_position_embeddings", 0);
                if (rope.has("original_max_position_embeddings") && original <= 0) {
                    throw rope.error("original_max_position_embeddings", "is " + original + "; expected e.g. 32768");
                }
                double factor;
                if (rope.has("factor")) {
                    factor = factor(rope, rope.requiredDouble("factor"));
                } else if (original > 0) {
                    // transformers 5: no factor means the ratio of the extended to the original context.
                    factor = (double) maxPositions / original;
                } else {
                    throw rope.error("factor", "is missing; yarn rope needs factor (or original_max_position_embeddings)");
                }
                Double attentionFactor = rope.optionalDouble("attention_factor");
                if (attentionFactor != null && !(attentionFactor > 0)) {
                    throw rope.error("attention_factor", "is " + attentionFactor + "; expected a positive number");
                }
                // Python's `x or default`: 0 and null both fall back to the default.
                double betaFast = rope.doubleValue("beta_fast", 0) == 0 ? 32 : rope.doubleValue("beta_fast", 0);
                double betaSlow = rope.doubleValue("beta_slow", 0) == 0 ? 1 : rope.doubleValue("beta_slow", 0);
                yield new RopeScaling("yarn", factor, 0, 0, original, betaFast, betaSlow, attentionFactor,
                        rope.optionalDouble("mscale"), rope.optionalDouble("mscale_all_dim"),
                        rope.boolValue("truncate", true));
            }
            default -> throw rope.error(typeKey, "is '" + type + "'; supported rope types: " + ROPE_TYPES);
        };
    }

    private static double factor(JsonField rope, double factor) {
        if (!(factor > 0) || Double.isInfinite(factor)) {
            throw rope.error("factor", "is " + factor + "; expected a positive scaling factor such as 8.0");
        }
        return factor;
    }

    private static int positive(JsonField f, String key, int value) {
        if (value <= 0) {
            throw f.error(key, "is " + value + "; expected a positive integer");
        }
        return value;
    }

    /**
     * The rotary inverse frequencies, computed step by step in float32 as transformers'
     * {@code modeling_rope_utils} does (so θ = position · invFreq[i] matches the reference bit for bit
     * up to libm differences in pow).
     */
    public RopeTable ropeTable() {
        int dim = headDim;
        int half = dim / 2;
        // Default: invFreq[i] = 1 / base^(2i/dim), with the exponent and the power in float32.
        float base = (float) ropeTheta;
        float[] posFreqs = new float[half];
        float[] inv = new float[half];
        for (int i = 0; i < half; i++) {
            posFreqs[i] = (float) Math.pow(base, (float) (2 * i) / (float) dim);
            inv[i] = 1f / posFreqs[i];
        }
        if (ropeScaling == null) {
            return new RopeTable(inv, 1f);
        }
        return switch (ropeScaling.type()) {
            case "linear" -> {
                // Linear position interpolation: θ = (pos / factor) · invFreq.
                float factor = (float) ropeScaling.factor();
                for (int i = 0; i < half; i++) {
                    inv[i] = inv[i] / factor;
                }
                yield new RopeTable(inv, 1f);
            }
            case "llama3" -> new RopeTable(llama3(inv, ropeScaling), 1f);
            case "yarn" -> yarn(posFreqs, ropeScaling);
            default -> throw new IllegalStateException("rope type " + ropeScaling.type());
        };
    }

    /**
     * Llama 3.1: wavelengths λ = 2π/invFreq longer than original/lowFreqFactor are divided by factor, those
     * shorter than original/highFreqFactor kept, and those between blended with
     * s = (original/λ − low)/(high − low): invFreq' = (1−s)·invFreq/factor + s·invFreq.
     */
    private static float[] llama3(float[] inv, RopeScaling r) {
        float factor = (float) r.factor();
        float low = (float) r.lowFreqFactor();
        float band = (float) (r.highFreqFactor() - r.lowFreqFactor());
        float original = (float) r.originalMaxPositionEmbeddings();
        float lowFreqWavelen = (float) (r.originalMaxPositionEmbeddings() / r.lowFreqFactor());
        float highFreqWavelen = (float) (r.originalMaxPositionEmbeddings() / r.highFreqFactor());
        float twoPi = (float) (2 * Math.PI);
        float[] out = new float[inv.length];
        for (int i = 0; i < inv.length; i++) {
            // torch evaluates scalar / tensor as reciprocal(tensor) * scalar.
            float wavelen = (1f / inv[i]) * twoPi;
            float scaled = wavelen > lowFreqWavelen ? inv[i] / factor : inv[i];
            if (!(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)) {
                float smooth = ((1f / wavelen) * original - low) / band;
                scaled = (1f - smooth) * scaled / factor + smooth * scaled;
            }
            out[i] = scaled;
        }
        return out;
    }

    /**
     * YaRN (Peng et al. 2023): dimensions that rotate fewer than betaSlow times over the original context are
     * interpolated (invFreq/factor), those rotating more than betaFast times extrapolated (kept), with a
     * linear ramp between; cos and sin are multiplied by the attention factor, 0.1·ln(factor) + 1 unless given.
     */
    private RopeTable yarn(float[] posFreqs, RopeScaling r) {
        int dim = headDim;
        int half = dim / 2;
        double factor = r.factor();
        int original = r.originalMaxPositionEmbeddings() > 0 ? r.originalMaxPositionEmbeddings() : maxPositionEmbeddings;
        double attentionFactor;
        if (r.attentionFactor() != null) {
            attentionFactor = r.attentionFactor();
        } else if (r.mscale() != null && r.mscale() != 0 && r.mscaleAllDim() != null && r.mscaleAllDim() != 0) {
            attentionFactor = yarnMscale(factor, r.mscale()) / yarnMscale(factor, r.mscaleAllDim());
        } else {
            attentionFactor = yarnMscale(factor, 1);
        }
        double low = yarnCorrectionDim(r.betaFast(), dim, ropeTheta, original);
        double high = yarnCorrectionDim(r.betaSlow(), dim, ropeTheta, original);
        if (r.truncate()) {
            low = Math.floor(low);
            high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, dim - 1);
        if (low == high) {
            high += 0.001; // transformers: prevent a zero-width ramp
        }
        float f = (float) factor;
        float[] inv = new float[half];
        for (int i = 0; i < half; i++) {
            float extrapolation = 1f / posFreqs[i];
            float interpolation = 1f / (f * posFreqs[i]);
            float ramp = ((float) i - (float) low) / (float) (high - low);
            ramp = Math.min(1f, Math.max(0f, ramp));
            float extrapolationFactor = 1f - ramp;
            inv[i] = interpolation * (1f - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        return new RopeTable(inv, (float) attentionFactor);
    }

    private static double yarnMscale(double scale, double mscale) {
        return scale <= 1 ? 1.0 : 0.1 * mscale * Math.log(scale) + 1.0;
    }

    /** The dimension whose wavelength fits {@code rotations} times into {@code positions}. */
    private static double yarnCorrectionDim(double rotations, int dim, double base, int positions) {
        return (dim * Math.log(positions / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
    }

    /**
     * Every tensor a HF checkpoint of this config holds, with its shape, in layer order: embeddings, per layer
     * the two RMSNorm weights and seven projections (plus q/k/v or MLP biases where configured), the final norm,
     * and lm_head.weight unless the embeddings are tied.
     */
    public Map<String, long[]> weightShapes() {
        Map<String, long[]> shapes = new LinkedHashMap<>();
        shapes.put("model.embed_tokens.weight", new long[] {vocabSize, hiddenSize});
        for (int layer = 0; layer < numLayers; layer++) {
            String prefix = "model.layers." + layer + ".";
            shapes.put(prefix + "input_layernorm.weight", new long[] {hiddenSize});
            shapes.put(prefix + "post_attention_layernorm.weight", new long[] {hiddenSize});
            for (Projection p : Projection.values()) {
                shapes.put(p.weightName(layer), new long[] {p.outFeatures(this), p.inFeatures(this)});
                boolean biased = p.parent().equals("mlp") ? mlpBias : attentionBias && p != Projection.O_PROJ;
                if (biased) {
                    shapes.put(p.modulePath(layer) + ".bias", new long[] {p.outFeatures(this)});
                }
            }
        }
        shapes.put("model.norm.weight", new long[] {hiddenSize});
        if (!tieWordEmbeddings) {
            shapes.put("lm_head.weight", new long[] {vocabSize, hiddenSize});
        }
        return shapes;
    }

    @Override
    public String toString() {
        return "ModelConfig[" + modelType + ", vocab=" + vocabSize + ", hidden=" + hiddenSize + ", intermediate="
                + intermediateSize + ", layers=" + numLayers + ", heads=" + numHeads + "/" + numKvHeads + "x" + headDim
                + ", maxPositions=" + maxPositionEmbeddings + ", eps=" + rmsNormEps + ", ropeTheta=" + ropeTheta
                + ", ropeScaling=" + ropeScaling + ", attentionBias=" + attentionBias + ", mlpBias=" + mlpBias
                + ", tied=" + tieWordEmbeddings + ", slidingWindow=" + slidingWindow + ", bos=" + bosTokenId
                + ", eos=" + eosTokenIds + ", dtype=" + torchDtype + "]";
    }
}
