package ai.punica.bench.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.ToIntFunction;

/**
 * Prompts and output lengths from a JSONL file, one JSON object a line (blank lines skipped), in one of
 * three forms:
 * <ul>
 *   <li>{@code {"prompt": "...", "max_tokens": 128}}: max_tokens optional (then {@code defaultMaxTokens});</li>
 *   <li>ShareGPT: {@code {"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value":
 *       "..."}, ...]}}: the first human turn is the prompt, the reply's length in tokens the output length;</li>
 *   <li>OpenAI messages: {@code {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}},
 *       read as ShareGPT.</li>
 * </ul>
 * A conversation with no reply gets {@code defaultMaxTokens}. A line that is not one of these is an error
 * naming the file, the line number and the field, and nothing is loaded.
 */
public final class Dataset {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Dataset() {
    }

    /**
     * Reads {@code file}; {@code tokenCount} measures prompts and replies (null: prompt lengths are not counted,
     * and ShareGPT lines need a tokenizer for their replies, so they are an error).
     */
    public static List<PromptSample> load(Path file, ToIntFunction<String> tokenCount, int defaultMaxTokens) {
        List<PromptSample> out = new ArrayList<>();
        try (BufferedReader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            String line;
            int number = 0;
            while ((line = reader.readLine()) != null) {
                number++;
                if (!line.isBlank()) {
                    out.add(parseLine(file, number, line, tokenCount, defaultMaxTokens));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read dataset " + file + ": " + e.getMessage(), e);
        }
        if (out.isEmpty()) {
            throw new DatasetException(file + ": no requests (the file is empty)");
        }
        return out;
    }

    private static PromptSample parseLine(Path file, int number, String line, ToIntFunction<String> tokenCount,
                                          int defaultMaxTokens) {
        String where = file + " line " + number + ": ";
        JsonNode node;
        try {
            node = JSON.readTree(line);
        } catch (JsonProcessingException e) {
            throw new DatasetException(where + "not JSON (" + e.getOriginalMessage() + ")");
        }
        if (node == null || !node.isObject()) {
            throw new DatasetException(where + "expected a JSON object with \"prompt\", \"conversations\" or "
                    + "\"messages\", got " + abbreviate(line));
        }
        if (node.has("prompt")) {
            JsonNode prompt = node.get("prompt");
            if (!prompt.isTextual() || prompt.asText().isEmpty()) {
                throw new DatasetException(where + "\"prompt\" must be a non-empty string, got " + abbreviate(
                        prompt.toString()));
            }
            int maxTokens = defaultMaxTokens;
            if (node.has("max_tokens")) {
                JsonNode m = node.get("max_tokens");
                if (!m.isIntegralNumber() || m.asLong() <= 0 || m.asLong() > Integer.MAX_VALUE) {
                    throw new DatasetException(where + "\"max_tokens\" must be a positive integer, got " + m);
                }
                maxTokens = m.asInt();
            }
            String text = prompt.asText();
            return new PromptSample(text, tokenCount == null ? -1 : tokenCount.applyAsInt(text), maxTokens);
        }
        String list = node.has("conversations") ? "conversations" : node.has("messages") ? "messages" : null;
        if (list == null) {
            throw new DatasetException(where + "has none of \"prompt\", \"conversations\" (ShareGPT) or "
                    + "\"messages\"; fields: " + fieldNames(node));
        }
        JsonNode turns = node.get(list);
        if (!turns.isArray()) {
            throw new DatasetException(where + "\"" + list + "\" must be an array of turns");
        }
        String prompt = null;
        String reply = null;
        for (int i = 0; i < turns.size(); i++) {
            JsonNode turn = turns.get(i);
            String role = text(turn, "from", "role");
            String value = text(turn, "value", "content");
            if (role == null || value == null) {
                throw new DatasetException(where + "\"" + list + "\"[" + i + "] needs \"from\" and \"value\" (or "
                        + "\"role\" and \"content\") strings, got " + abbreviate(turn.toString()));
            }
            boolean user = role.equals("human") || role.equals("user");
            boolean assistant = role.equals("gpt") || role.equals("assistant") || role.equals("chatgpt");
            if (prompt == null && user && !value.isEmpty()) {
                prompt = value;
            } else if (prompt != null && assistant) {
                reply = value;
                break;
            }
        }
        if (prompt == null) {
            throw new DatasetException(where + "\"" + list + "\" has no non-empty turn from \"human\" or \"user\"");
        }
        int maxTokens = defaultMaxTokens;
        if (reply != null) {
            if (tokenCount == null) {
                throw new DatasetException(where + "a conversation's output length is its reply's length in "
                        + "tokens, which needs a tokenizer: pass --tokenizer MODEL_DIR");
            }
            maxTokens = Math.max(1, tokenCount.applyAsInt(reply));
        }
        return new PromptSample(prompt, tokenCount == null ? -1 : tokenCount.applyAsInt(prompt), maxTokens);
    }

    private static String text(JsonNode turn, String name, String alternative) {
        if (turn == null || !turn.isObject()) {
            return null;
        }
        JsonNode v = turn.has(name) ? turn.get(name) : turn.get(alternative);
        return v != null && v.isTextual() ? v.asText() : null;
    }

    private static String fieldNames(JsonNode node) {
        List<String> names = new ArrayList<>();
        node.fieldNames().forEachRemaining(names::add);
        return names.isEmpty() ? "(none)" : String.join(", ", names);
    }

    private static String abbreviate(String s) {
        return s.length() <= 60 ? s : s.substring(0, 57) + "...";
    }
}
