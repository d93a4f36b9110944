package ai.punica.tokenizer;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.util.HashMap;
import java.util.Map;

/**
 * Reads tokenizer.json as a stream: everything but {@code model.vocab} and {@code model.merges}
 * becomes a small JSON tree; the vocabulary goes straight into its map and the merges into an int
 * list of token-id pairs. A 262k-token file (Gemma 3: 33 MB of JSON, 515k merges) then never
 * exists as a String or a tree of 800k nodes, and loading needs little more heap than the
 * tokenizer keeps (issue 19).
 */
final class TokenizerJsonReader {
    /** The tree without vocab and merges, and those two, or null tables if the file had none to stream. */
    record Result(JsonNode root, BpeModel.Tables tables) {
    }

    private TokenizerJsonReader() {
    }

    static Result read(InputStream in, String file, ObjectMapper json) throws IOException {
        try (JsonParser p = json.getFactory().createParser(in)) {
            p.setCodec(json);
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new TokenizerException(file + ": expected a JSON object at the top level");
            }
            ObjectNode root = json.createObjectNode();
            BpeModel.Tables tables = null;
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken value = p.nextToken();
                if (name.equals("model") && value == JsonToken.START_OBJECT) {
                    ObjectNode model = json.createObjectNode();
                    tables = readModel(p, model, file);
                    root.set("model", model);
                } else {
                    root.set(name, p.readValueAsTree());
                }
            }
            return new Result(root, tables);
        }
    }

    /** The model object's fields into {@code model}, except vocab and merges (returned as tables). */
    private static BpeModel.Tables readModel(JsonParser p, ObjectNode model, String file) throws IOException {
        Map<String, Integer> vocab = null;
        IntList pairs = null;
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String name = p.currentName();
            JsonToken value = p.nextToken();
            if (name.equals("vocab") && value == JsonToken.START_OBJECT) {
                vocab = new HashMap<>();
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String token = p.currentName();
                    if (p.nextToken() != JsonToken.VALUE_NUMBER_INT) {
                        throw new TokenizerException(file + ": model.vocab[\"" + token + "\"]: expected an integer id");
                    }
                    vocab.put(token, p.getIntValue());
                }
            } else if (name.equals("merges") && value == JsonToken.START_ARRAY && vocab != null) {
                pairs = new IntList(1 << 16);
                int rank = 0;
                while (p.nextToken() != JsonToken.END_ARRAY) {
                    String left;
                    String right;
                    if (p.currentToken() == JsonToken.VALUE_STRING) {
                        String s = p.getText();
                        int space = s.indexOf(' ');
                        if (space < 0) {
                            throw new TokenizerException(file + ": model.merges[" + rank + "]: expected a merge "
                                    + "\"left right\", found \"" + s + "\"");
                        }
                        left = s.substring(0, space);
                        right = s.substring(space + 1);
                    } else if (p.currentToken() == JsonToken.START_ARRAY) {
                        p.nextToken();
                        left = p.getValueAsString();
                        p.nextToken();
                        right = p.getValueAsString();
                        if (p.nextToken() != JsonToken.END_ARRAY) {
                            throw new TokenizerException(file + ": model.merges[" + rank + "]: expected [left, right]");
                        }
                    } else {
                        throw new TokenizerException(file + ": model.merges[" + rank + "]: expected a merge as "
                                + "\"left right\" or [left, right]");
                    }
                    Integer leftId = left == null ? null : vocab.get(left);
                    Integer rightId = right == null ? null : vocab.get(right);
                    if (leftId == null || rightId == null) {
                        throw new TokenizerException(file + ": model.merges[" + rank + "]: merge uses \""
                                + (leftId == null ? left : right) + "\", which is not in model.vocab");
                    }
                    pairs.add(leftId);
                    pairs.add(rightId);
                    rank++;
                }
            } else {
                model.set(name, p.readValueAsTree());
            }
        }
        // Merges listed before the vocabulary (no file seen so far does this) stay in the tree.
        return vocab == null ? null : new BpeModel.Tables(vocab, model.has("merges") ? null
                : pairs == null ? new IntList(0) : pairs);
    }
}
