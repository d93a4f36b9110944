package ai.punica;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** fixtures/reference/hf_reference.json: what HF transformers + PEFT computed on the fixture weights. */
public final class HfReference {

    /** One prompt run with one adapter (null = base). */
    public record Run(int promptIndex, String promptName, String adapter, int[] promptIds, float[] lastLogits,
                      int[] greedyIds, String greedyText, boolean stoppedOnEos, float minMargin) {
    }

    public record Mixed(List<Run> rows) {
    }

    private static HfReference instance;
    private final List<Run> single = new ArrayList<>();
    private final List<Run> mixed = new ArrayList<>();
    private final int maxNewTokens;
    private final int eosTokenId;

    private HfReference(JsonNode root) {
        maxNewTokens = root.get("max_new_tokens").asInt();
        eosTokenId = root.get("eos_token_id").asInt();
        for (JsonNode n : root.get("single")) {
            single.add(run(n));
        }
        for (JsonNode n : root.get("mixed_batch").get("rows")) {
            mixed.add(run(n));
        }
    }

    private static Run run(JsonNode n) {
        String adapter = n.hasNonNull("adapter") ? n.get("adapter").asText() : null;
        if ("__base__".equals(adapter)) {
            adapter = null;
        }
        return new Run(n.get("prompt_index").asInt(), n.get("prompt_name").asText(), adapter, ints(n.get("prompt_ids")),
                floats(n.get("last_logits")), n.has("greedy_ids") ? ints(n.get("greedy_ids")) : null,
                n.has("greedy_text") ? n.get("greedy_text").asText() : null,
                n.has("stopped_on_eos") && n.get("stopped_on_eos").asBoolean(),
                n.has("min_margin") ? (float) n.get("min_margin").asDouble() : Float.NaN);
    }

    public static synchronized HfReference load() {
        if (instance == null) {
            Path file = Fixtures.path("reference", "hf_reference.json");
            try {
                instance = new HfReference(new ObjectMapper().readTree(file.toFile()));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + file, e);
            }
        }
        return instance;
    }

    public List<Run> single() {
        return single;
    }

    public List<Run> mixedBatch() {
        return mixed;
    }

    public int maxNewTokens() {
        return maxNewTokens;
    }

    public int eosTokenId() {
        return eosTokenId;
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }

    static float[] floats(JsonNode array) {
        float[] out = new float[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) array.get(i).asDouble();
        }
        return out;
    }
}
