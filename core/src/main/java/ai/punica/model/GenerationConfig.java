package ai.punica.model;

import ai.punica.json.JsonField;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * {@code generation_config.json} of a model directory (optional): special tokens and the sampling defaults
 * the model's authors recommend. Absent values are -1 (token ids), empty (eos) or null (sampling).
 */
public record GenerationConfig(int bosTokenId, List<Integer> eosTokenIds, int padTokenId, Float temperature, Float topP,
        Integer topK) {

    public static final String FILE = "generation_config.json";

    public GenerationConfig {
        eosTokenIds = List.copyOf(eosTokenIds);
    }

    /** No generation_config.json: nothing known. */
    public static GenerationConfig defaults() {
        return new GenerationConfig(-1, List.of(), -1, null, null, null);
    }

    /** Reads {@code dir/generation_config.json}, or returns {@link #defaults()} when the model has none. */
    public static GenerationConfig load(Path dir) {
        Path file = dir.resolve(FILE);
        if (!Files.exists(file)) {
            return defaults();
        }
        return from(JsonField.read(file, ModelFormatException::new));
    }

    public static GenerationConfig parse(String json, String sourceName) {
        return from(JsonField.parse(json, sourceName, ModelFormatException::new));
    }

    private static GenerationConfig from(JsonField f) {
        Float temperature = f.has("temperature") ? (float) f.requiredDouble("temperature") : null;
        if (temperature != null && temperature < 0) {
            throw f.error("temperature", "is " + temperature + "; expected 0 or more");
        }
        Float topP = f.has("top_p") ? (float) f.requiredDouble("top_p") : null;
        if (topP != null && !(topP > 0 && topP <= 1)) {
            throw f.error("top_p", "is " + topP + "; expected a probability in (0, 1]");
        }
        Integer topK = f.has("top_k") ? f.requiredInt("top_k") : null;
        if (topK != null && topK < 0) {
            throw f.error("top_k", "is " + topK + "; expected 0 (off) or more");
        }
        return new GenerationConfig(f.intValue("bos_token_id", -1), f.intOrIntList("eos_token_id"),
                f.intValue("pad_token_id", -1), temperature, topP, topK);
    }
}
