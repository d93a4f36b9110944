package ai.punica.model;

import java.util.Locale;

/**
 * The seven linear projections of a Llama decoder layer, with their HuggingFace module names. Weights are
 * stored as {@code [outFeatures, inFeatures]} (nn.Linear), so {@code y = x·Wᵀ}.
 *
 * <pre>
 * x ─┬─ q_proj ─┐                            x ─┬─ gate_proj ─ silu ─┐
 *    ├─ k_proj ─┼─ attention ─ o_proj ─►        └─ up_proj ─────────(×)─ down_proj ─►
 *    └─ v_proj ─┘
 * </pre>
 */
public enum Projection {
    Q_PROJ("self_attn"),
    K_PROJ("self_attn"),
    V_PROJ("self_attn"),
    O_PROJ("self_attn"),
    GATE_PROJ("mlp"),
    UP_PROJ("mlp"),
    DOWN_PROJ("mlp");

    private final String parent;
    /** The HF module name: the constant's name in lower case ("q_proj"). */
    private final String moduleName = name().toLowerCase(Locale.ROOT);

    Projection(String parent) {
        this.parent = parent;
    }

    /** "q_proj". */
    public String moduleName() {
        return moduleName;
    }

    /** "self_attn" or "mlp". */
    public String parent() {
        return parent;
    }

    /** q/k/v/gate/up read the hidden state; o reads the concatenated heads; down reads the MLP activation. */
    public int inFeatures(ModelConfig c) {
        return switch (this) {
            case Q_PROJ, K_PROJ, V_PROJ, GATE_PROJ, UP_PROJ -> c.hiddenSize();
            case O_PROJ -> c.numHeads() * c.headDim();
            case DOWN_PROJ -> c.intermediateSize();
        };
    }

    public int outFeatures(ModelConfig c) {
        return switch (this) {
            case Q_PROJ -> c.numHeads() * c.headDim();
            case K_PROJ, V_PROJ -> c.numKvHeads() * c.headDim();
            case O_PROJ, DOWN_PROJ -> c.hiddenSize();
            case GATE_PROJ, UP_PROJ -> c.intermediateSize();
        };
    }

    /** The module's path in a HF Llama-family model: "model.layers.3.self_attn.q_proj". */
    public String modulePath(int layer) {
        return "model.layers." + layer + "." + parent + "." + moduleName;
    }

    /** The checkpoint tensor of this projection's weight: "model.layers.3.self_attn.q_proj.weight". */
    public String weightName(int layer) {
        return modulePath(layer) + ".weight";
    }

    /** The projection with HF module name {@code s} ("q_proj"), or null if it is not one of the seven. */
    public static Projection fromModuleName(String s) {
        for (Projection p : values()) {
            if (p.moduleName.equals(s)) {
                return p;
            }
        }
        return null;
    }
}
