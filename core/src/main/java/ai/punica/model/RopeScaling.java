package ai.punica.model;

/**
 * The {@code rope_scaling} (transformers ≤ 4) or {@code rope_parameters} (transformers 5) of a config,
 * for the rope types Punica-J implements. Fields a type does not use hold their transformers default.
 *
 * @param type                          "linear", "llama3" or "yarn" ("default" is represented by no RopeScaling)
 * @param factor                        context extension factor (all types)
 * @param lowFreqFactor                 llama3
 * @param highFreqFactor                llama3
 * @param originalMaxPositionEmbeddings llama3; yarn (0 = use max_position_embeddings)
 * @param betaFast                      yarn, default 32
 * @param betaSlow                      yarn, default 1
 * @param attentionFactor               yarn; null = derived from factor (and mscale) as transformers does
 * @param mscale                        yarn (DeepSeek style), null if absent
 * @param mscaleAllDim                  yarn (DeepSeek style), null if absent
 * @param truncate                      yarn: round the correction range to whole dimensions (default true)
 */
public record RopeScaling(String type, double factor, double lowFreqFactor, double highFreqFactor,
        int originalMaxPositionEmbeddings, double betaFast, double betaSlow, Double attentionFactor, Double mscale,
        Double mscaleAllDim, boolean truncate) {

    public static RopeScaling linear(double factor) {
        return new RopeScaling("linear", factor, 0, 0, 0, 32, 1, null, null, null, true);
    }

    public static RopeScaling llama3(double factor, double lowFreqFactor, double highFreqFactor,
            int originalMaxPositionEmbeddings) {
        return new RopeScaling("llama3", factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings, 32, 1,
                null, null, null, true);
    }
}
