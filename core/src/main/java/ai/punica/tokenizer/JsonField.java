package ai.punica.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * A node of tokenizer.json together with the file name and JSON path that reached it, so that every
 * complaint about the file says exactly where the problem is.
 */
record JsonField(String file, String path, JsonNode node) {

    JsonField get(String name) {
        JsonNode child = node == null ? null : node.get(name);
        return new JsonField(file, path.isEmpty() ? name : path + "." + name, child);
    }

    JsonField at(int index) {
        return new JsonField(file, path + "[" + index + "]", node == null ? null : node.get(index));
    }

    boolean isAbsent() {
        return node == null || node.isNull() || node.isMissingNode();
    }

    boolean has(String name) {
        return !get(name).isAbsent();
    }

    String text() {
        if (isAbsent() || !node.isTextual()) {
            throw error("expected a string, found " + describe());
        }
        return node.asText();
    }

    String text(String fallback) {
        return isAbsent() ? fallback : text();
    }

    int intValue() {
        if (isAbsent() || !node.canConvertToInt()) {
            throw error("expected an integer, found " + describe());
        }
        return node.asInt();
    }

    int intValue(int fallback) {
        return isAbsent() ? fallback : intValue();
    }

    boolean bool(boolean fallback) {
        if (isAbsent()) {
            return fallback;
        }
        if (!node.isBoolean()) {
            throw error("expected true or false, found " + describe());
        }
        return node.asBoolean();
    }

    List<JsonField> elements() {
        if (isAbsent() || !node.isArray()) {
            throw error("expected a list, found " + describe());
        }
        List<JsonField> out = new ArrayList<>(node.size());
        for (int i = 0; i < node.size(); i++) {
            out.add(at(i));
        }
        return out;
    }

    /** Object members in file order. */
    List<Map.Entry<String, JsonField>> members() {
        if (isAbsent() || !node.isObject()) {
            throw error("expected an object, found " + describe());
        }
        List<Map.Entry<String, JsonField>> out = new ArrayList<>(node.size());
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            out.add(Map.entry(name, get(name)));
        }
        return out;
    }

    String type() {
        return get("type").text();
    }

    TokenizerException error(String what) {
        return new TokenizerException(file + ": field " + (path.isEmpty() ? "(root)" : path) + ": " + what);
    }

    TokenizerException unsupported(String kind, String supported) {
        return new TokenizerException(file + ": field " + path + ".type: " + kind + " type \"" + get("type").text("?")
                + "\" is not supported (supported: " + supported + ")");
    }

    private String describe() {
        if (isAbsent()) {
            return "nothing";
        }
        String s = node.toString();
        return s.length() > 80 ? s.substring(0, 77) + "..." : s;
    }
}
