package ai.punica.lora;

import ai.punica.model.Projection;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Which modules a PEFT LoRA config adapts: {@code target_modules}, {@code exclude_modules} and
 * {@code layers_to_transform}, decided per module path ("model.layers.3.self_attn.q_proj") exactly as PEFT's
 * {@code check_target_module_exists} decides it when it builds the model:
 * <ul>
 *   <li>exclude first: a regex excludes on full match, a list on equality or ".name" suffix;</li>
 *   <li>a regex target selects on full match (and PEFT forbids layers_to_transform with it);</li>
 *   <li>a list target selects a path equal to an entry outright, else a path ending in ".entry", which
 *       layers_to_transform (when given) narrows to the listed layer indices;</li>
 *   <li>"all-linear" selects every linear layer but the output head: here, all seven projections.</li>
 * </ul>
 *
 * @param names        target_modules as a list, else null
 * @param regex        target_modules as a regex (Python syntax, (?P&lt;..&gt; translated), else null
 * @param allLinear    target_modules was "all-linear"
 * @param excludeNames exclude_modules as a list (empty if none)
 * @param excludeRegex exclude_modules as a regex, else null
 * @param layers       layers_to_transform; empty = every layer
 */
public record TargetModules(List<String> names, String regex, boolean allLinear, List<String> excludeNames,
        String excludeRegex, Set<Integer> layers) {

    public TargetModules {
        names = names == null ? null : List.copyOf(names);
        excludeNames = List.copyOf(excludeNames);
        layers = Set.copyOf(layers);
    }

    public static TargetModules list(List<String> names) {
        return new TargetModules(names, null, false, List.of(), null, Set.of());
    }

    /** Whether the module at {@code path} (in layer {@code layer}) is adapted. */
    public boolean selects(String path, int layer) {
        if (excludeRegex != null && Pattern.compile(excludeRegex).matcher(path).matches()) {
            return false;
        }
        if (excludeNames.stream().anyMatch(e -> matchesName(path, e))) {
            return false;
        }
        if (allLinear) {
            // PEFT expands "all-linear" to the linear module names, so layers_to_transform still applies.
            return layers.isEmpty() || layers.contains(layer);
        }
        if (regex != null) {
            return Pattern.compile(regex).matcher(path).matches();
        }
        if (names.contains(path)) {
            return true;
        }
        return names.stream().anyMatch(n -> path.endsWith("." + n)) && (layers.isEmpty() || layers.contains(layer));
    }

    /**
     * True when {@link #selects} answers the same for every layer: no regex, no layers_to_transform, and only
     * plain module names (no dot), which can match nothing but a path's last segment.
     */
    boolean sameForEveryLayer() {
        return regex == null && excludeRegex == null && layers.isEmpty()
                && (names == null || names.stream().noneMatch(n -> n.contains(".")))
                && excludeNames.stream().noneMatch(n -> n.contains("."));
    }

    public boolean selects(int layer, Projection p) {
        return selects(p.modulePath(layer), layer);
    }

    /** PEFT's list matching: the whole path, or its tail after a dot. */
    static boolean matchesName(String path, String name) {
        return path.equals(name) || path.endsWith("." + name);
    }

    /** Python regex syntax to java.util.regex for what PEFT configs use (named groups). */
    static String javaRegex(String python) {
        return python.replace("(?P<", "(?<").replaceAll("\\(\\?P=(\\w+)\\)", "\\\\k<$1>");
    }
}
