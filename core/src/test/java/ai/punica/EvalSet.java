package ai.punica;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** A held-out evaluation set, fixtures/eval/&lt;skill&gt;.jsonl. */
public final class EvalSet {
    /** Skills in the fixtures: the base model copies; each adapter has the skill of its name. */
    public static final List<String> SKILLS = List.of("copy", "upper", "reverse", "translate", "sort");

    public record Example(String prompt, String user, String expected) {
    }

    private EvalSet() {
    }

    public static List<Example> load(String skill) {
        Path file = Fixtures.path("eval", skill + ".jsonl");
        ObjectMapper json = new ObjectMapper();
        List<Example> out = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(file)) {
                if (line.isBlank()) {
                    continue;
                }
                JsonNode n = json.readTree(line);
                out.add(new Example(n.get("prompt").asText(), n.get("user").asText(), n.get("expected").asText()));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file, e);
        }
        return out;
    }

    /** The adapter that has a skill (null: the base model's copy skill). */
    public static String adapterFor(String skill) {
        return skill.equals("copy") ? null : skill;
    }
}
