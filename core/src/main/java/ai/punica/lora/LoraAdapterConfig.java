package ai.punica.lora;

import ai.punica.json.JsonField;
import ai.punica.model.ModelFormatException;
import ai.punica.model.Projection;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * {@code adapter_config.json} of a PEFT LoRA adapter. Only plain LoRA on the seven decoder projections is
 * accepted; every PEFT option that would change the math Punica-J computes ({@code Y += s·X·Aᵀ·Bᵀ}) — DoRA,
 * biases, extra trainable modules, embedding targets — is rejected with the field that asks for it.
 *
 * @param rank          lora r (the default for modules rank_pattern does not match)
 * @param alpha         lora_alpha (the default for modules alpha_pattern does not match)
 * @param targets       the projections adapted in at least one layer
 * @param rankPattern   module-name regex → r, in file order (first match wins, as in PEFT)
 * @param alphaPattern  module-name regex → alpha, in file order
 * @param baseModelName base_model_name_or_path, null if absent
 * @param targetModules the per-module selection behind {@code targets}; null = {@code targets} in every layer
 */
public record LoraAdapterConfig(int rank, double alpha, boolean useRslora, Set<Projection> targets,
        Map<String, Integer> rankPattern, Map<String, Double> alphaPattern, String baseModelName,
        TargetModules targetModules) {

    /**
     * {@link #targets} is derived by asking {@link TargetModules} about layers 0..PROBED_LAYERS-1 (and any in
     * layers_to_transform); more than any Llama-family model has (Llama 3.1 405B: 126).
     */
    static final int PROBED_LAYERS = 256;

    /** What PEFT uses for llama, mistral and qwen2 when target_modules is not set. */
    static final List<String> DEFAULT_TARGETS = List.of("q_proj", "v_proj");

    public LoraAdapterConfig {
        if (targetModules == null) {
            targetModules = TargetModules.list(targets.stream().map(Projection::moduleName).toList());
        }
        targets = Collections.unmodifiableSet(targets.isEmpty() ? EnumSet.noneOf(Projection.class) : EnumSet.copyOf(targets));
        rankPattern = Collections.unmodifiableMap(new LinkedHashMap<>(rankPattern));
        alphaPattern = Collections.unmodifiableMap(new LinkedHashMap<>(alphaPattern));
    }

    /** A config adapting {@code targets} in every layer (what target_modules = their module names means). */
    public LoraAdapterConfig(int rank, double alpha, boolean useRslora, Set<Projection> targets,
            Map<String, Integer> rankPattern, Map<String, Double> alphaPattern, String baseModelName) {
        this(rank, alpha, useRslora, targets, rankPattern, alphaPattern, baseModelName, null);
    }

    /** lora_alpha / r, or lora_alpha / √r with rsLoRA (Kalajdzievski 2023), the factor on B·A. */
    public double scale(int rank, double alpha) {
        return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
    }

    /** Whether layer {@code layer}'s projection {@code p} is adapted. */
    public boolean adapts(int layer, Projection p) {
        return targetModules.selects(layer, p);
    }

    /** r of one module: the first rank_pattern key matching its path, else {@link #rank}. */
    public int rank(int layer, Projection p) {
        String key = patternKey(rankPattern.keySet(), p.modulePath(layer));
        return key == null ? rank : rankPattern.get(key);
    }

    /** lora_alpha of one module: the first alpha_pattern key matching its path, else {@link #alpha}. */
    public double alpha(int layer, Projection p) {
        String key = patternKey(alphaPattern.keySet(), p.modulePath(layer));
        return key == null ? alpha : alphaPattern.get(key);
    }

    /** The scale of one module, with its own rank and alpha. */
    public float scale(int layer, Projection p) {
        return (float) scale(rank(layer, p), alpha(layer, p));
    }

    /** PEFT's get_pattern_key: a key matches a path that it ends, at a dot boundary, as a regex. */
    private static String patternKey(Set<String> keys, String path) {
        for (String key : keys) {
            if (Pattern.compile("(.*\\.)?(" + TargetModules.javaRegex(key) + ")").matcher(path).matches()) {
                return key;
            }
        }
        return null;
    }

    public static LoraAdapterConfig load(Path adapterConfigJson) {
        return from(JsonField.read(adapterConfigJson, ModelFormatException::new));
    }

    public static LoraAdapterConfig parse(String json, String sourceName) {
        return from(JsonField.parse(json, sourceName, ModelFormatException::new));
    }

    private static LoraAdapterConfig from(JsonField f) {
        f.requireOneOf("peft_type", Set.of("LORA"), "Punica-J serves LoRA adapters only (peft_type LORA)");
        rejectIf(f, "use_dora", f.boolValue("use_dora", false), "is true; DoRA adapters are not supported, only plain LoRA");
        String bias = f.string("bias", "none");
        rejectIf(f, "bias", !bias.equals("none"), "is '" + bias
                + "'; only adapters without trained biases (bias \"none\") are supported");
        rejectIf(f, "fan_in_fan_out", f.boolValue("fan_in_fan_out", false),
                "is true; that is for GPT-2 style Conv1D layers, Llama-family adapters store lora_A as [r, in]");
        rejectIf(f, "lora_bias", f.boolValue("lora_bias", false), "is true; a bias on lora_B is not supported");
        List<String> modulesToSave = f.stringOrStringList("modules_to_save");
        rejectIf(f, "modules_to_save", modulesToSave != null && !modulesToSave.isEmpty(), "is " + modulesToSave
                + "; adapters that replace whole modules (e.g. lm_head, embed_tokens) cannot share one base model "
                + "in a batch; retrain without modules_to_save");
        for (String unsupported : List.of("layer_replication", "trainable_token_indices", "alora_invocation_tokens",
                "arrow_config")) {
            rejectIf(f, unsupported, f.has(unsupported), "is " + f.node(unsupported) + "; not supported by Punica-J");
        }
        JsonNode targetParameters = f.node("target_parameters");
        rejectIf(f, "target_parameters", targetParameters != null && !targetParameters.isEmpty(),
                "is " + targetParameters + "; LoRA on raw parameters (MoE experts) is not supported");

        int r = f.intValue("r", 8);
        if (r <= 0) {
            throw f.error("r", "is " + r + "; expected a positive LoRA rank");
        }
        double alpha = f.doubleValue("lora_alpha", 8);
        Map<String, Integer> rankPattern = new LinkedHashMap<>();
        f.numberMap("rank_pattern").forEach((key, value) -> {
            compile(f, "rank_pattern", key);
            if (!value.isIntegralNumber() || !value.canConvertToInt() || value.intValue() <= 0) {
                throw f.error("rank_pattern", "maps '" + key + "' to " + value + "; expected a positive integer rank");
            }
            rankPattern.put(key, value.intValue());
        });
        Map<String, Double> alphaPattern = new LinkedHashMap<>();
        f.numberMap("alpha_pattern").forEach((key, value) -> {
            compile(f, "alpha_pattern", key);
            alphaPattern.put(key, value.doubleValue());
        });

        TargetModules targetModules = targetModules(f);
        Set<Integer> probe = new LinkedHashSet<>(targetModules.layers());
        // Registering thousands of adapters parses thousands of configs: probe one layer when one tells all.
        int probed = targetModules.sameForEveryLayer() ? 1 : PROBED_LAYERS;
        for (int layer = 0; layer < probed; layer++) {
            probe.add(layer);
        }
        EnumSet<Projection> targets = EnumSet.noneOf(Projection.class);
        for (Projection p : Projection.values()) {
            if (probe.stream().anyMatch(layer -> targetModules.selects(layer, p))) {
                targets.add(p);
            }
        }
        if (targets.isEmpty()) {
            throw f.error("target_modules", "is " + f.node("target_modules") + ", which selects none of the "
                    + "projections Punica-J adapts: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
        }
        return new LoraAdapterConfig(r, alpha, f.boolValue("use_rslora", false), targets, rankPattern, alphaPattern,
                f.string("base_model_name_or_path", null), targetModules);
    }

    private static TargetModules targetModules(JsonField f) {
        Set<Integer> layers = layersToTransform(f);
        JsonNode layersPattern = f.node("layers_pattern");
        if (layersPattern != null) {
            List<String> patterns = f.stringOrStringList("layers_pattern");
            rejectIf(f, "layers_pattern", !patterns.isEmpty() && !patterns.equals(List.of("layers")), "is "
                    + layersPattern + "; Llama-family decoder layers live under 'layers' (use \"layers\" or null)");
        }
        JsonNode excludeNode = f.node("exclude_modules");
        String excludeRegex = null;
        List<String> excludeNames = List.of();
        if (excludeNode != null && excludeNode.isTextual()) {
            excludeRegex = compile(f, "exclude_modules", excludeNode.textValue());
        } else if (excludeNode != null) {
            excludeNames = f.stringOrStringList("exclude_modules");
        }

        JsonNode node = f.node("target_modules");
        if (node != null && node.isTextual() && node.textValue().equalsIgnoreCase("all-linear")) {
            return new TargetModules(null, null, true, excludeNames, excludeRegex, layers);
        }
        if (node != null && node.isTextual()) {
            rejectIf(f, "layers_to_transform", !layers.isEmpty(),
                    "is set while target_modules is a regex; PEFT does not allow that combination either");
            String regex = compile(f, "target_modules", node.textValue());
            for (String head : List.of("lm_head", "model.embed_tokens")) {
                rejectIf(f, "target_modules", Pattern.compile(regex).matcher(head).matches(), "is the regex '"
                        + node.textValue() + "', which matches " + head
                        + "; LoRA on embeddings or the LM head is not supported, only the seven decoder projections");
            }
            return new TargetModules(null, regex, false, excludeNames, excludeRegex, layers);
        }
        List<String> names = node == null ? DEFAULT_TARGETS : f.stringOrStringList("target_modules");
        for (String name : names) {
            for (String head : List.of("lm_head", "model.embed_tokens")) {
                rejectIf(f, "target_modules", TargetModules.matchesName(head, name), "lists '" + name
                        + "'; LoRA on embeddings or the LM head is not supported, only the seven decoder projections");
            }
        }
        return new TargetModules(new ArrayList<>(names), null, false, excludeNames, excludeRegex, layers);
    }

    private static Set<Integer> layersToTransform(JsonField f) {
        JsonNode node = f.node("layers_to_transform");
        Set<Integer> layers = new LinkedHashSet<>();
        if (node == null) {
            return layers;
        }
        if (node.isArray()) {
            for (JsonNode element : node) {
                if (!element.isIntegralNumber() || !element.canConvertToInt() || element.intValue() < 0) {
                    throw f.error("layers_to_transform", "is " + node + "; expected layer indices (integers >= 0)");
                }
                layers.add(element.intValue());
            }
        } else if (node.isIntegralNumber() && node.canConvertToInt() && node.intValue() >= 0) {
            layers.add(node.intValue());
        } else {
            throw f.error("layers_to_transform", "is " + node + "; expected a layer index or a list of them");
        }
        return layers;
    }

    private static String compile(JsonField f, String field, String pythonRegex) {
        String regex = TargetModules.javaRegex(pythonRegex);
        try {
            Pattern.compile(regex);
            return regex;
        } catch (PatternSyntaxException e) {
            throw new ModelFormatException(f.where(field) + " has regex '" + pythonRegex + "', which does not compile: "
                    + e.getDescription(), e);
        }
    }

    private static void rejectIf(JsonField f, String field, boolean condition, String problem) {
        if (condition) {
            throw f.error(field, problem);
        }
    }
}
