package ai.punica.model;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Typed, defaulting access to one JSON object of a HuggingFace/PEFT config file. Every failure is a
 * {@link ModelFormatException} that names the source file and the field path ({@code rope_scaling.factor})
 * and shows the value found, because these files are hand-edited more often than one would like.
 */
public final class JsonFields {

    /** Shared: strict about duplicate keys and trailing garbage, which Python's json would also reject or hide. */
    static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private final JsonNode object;
    private final String source;
    private final String prefix;

    private JsonFields(JsonNode object, String source, String prefix) {
        this.object = object;
        this.source = source;
        this.prefix = prefix;
    }

    /** Parses {@code json}, which must be one JSON object; {@code source} names it in messages (usually the path). */
    public static JsonFields parse(String json, String source) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JacksonException e) {
            throw new ModelFormatException(source + ": not valid JSON: " + firstLine(e.getOriginalMessage())
                    + " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")", e);
        }
        if (root == null || !root.isObject()) {
            throw new ModelFormatException(source + ": expected a JSON object at the top level, found "
                    + (root == null ? "nothing" : root.getNodeType().toString().toLowerCase()));
        }
        return new JsonFields(root, source, "");
    }

    /** Reads and parses a JSON file; a missing or unreadable file is a {@link ModelFormatException} naming it. */
    public static JsonFields read(Path file) {
        String text;
        try {
            text = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw new ModelFormatException(file + ": file not found", e);
        } catch (IOException e) {
            throw new ModelFormatException(file + ": cannot read: " + e, e);
        }
        return parse(text, file.toString());
    }

    public String source() {
        return source;
    }

    /** True when {@code key} is present and not JSON null (HF writes absent options as null). */
    public boolean has(String key) {
        JsonNode node = object.get(key);
        return node != null && !node.isNull();
    }

    /** True when {@code key} is present, even if its value is JSON null (null and absent can mean different things). */
    public boolean present(String key) {
        return object.get(key) != null;
    }

    /** The field names in file order. */
    public List<String> keys() {
        List<String> keys = new ArrayList<>();
        object.fieldNames().forEachRemaining(keys::add);
        return keys;
    }

    /** "config.json: field 'rope_scaling.factor' ..." prefix for messages. */
    public String where(String key) {
        return source + ": field '" + prefix + key + "'";
    }

    public ModelFormatException error(String key, String problem) {
        return new ModelFormatException(where(key) + " " + problem);
    }

    public int intValue(String key, int dflt) {
        return has(key) ? asInt(key, object.get(key)) : dflt;
    }

    public int requiredInt(String key) {
        requirePresent(key, "an integer");
        return asInt(key, object.get(key));
    }

    public double doubleValue(String key, double dflt) {
        return has(key) ? asDouble(key, object.get(key)) : dflt;
    }

    public double requiredDouble(String key) {
        requirePresent(key, "a number");
        return asDouble(key, object.get(key));
    }

    /** A number, or null when absent or null. */
    public Double optionalDouble(String key) {
        return has(key) ? asDouble(key, object.get(key)) : null;
    }

    public boolean boolValue(String key, boolean dflt) {
        if (!has(key)) {
            return dflt;
        }
        JsonNode node = object.get(key);
        if (!node.isBoolean()) {
            throw error(key, "is " + node + "; expected true or false");
        }
        return node.booleanValue();
    }

    public String string(String key, String dflt) {
        if (!has(key)) {
            return dflt;
        }
        JsonNode node = object.get(key);
        if (!node.isTextual()) {
            throw error(key, "is " + node + "; expected a string");
        }
        return node.textValue();
    }

    /** A nested object, or null when absent or null. */
    public JsonFields object(String key) {
        if (!has(key)) {
            return null;
        }
        JsonNode node = object.get(key);
        if (!node.isObject()) {
            throw error(key, "is " + node + "; expected a JSON object");
        }
        return new JsonFields(node, source, prefix + key + ".");
    }

    /** An integer or a list of integers (eos_token_id); empty when absent or null. */
    public int[] intOrIntList(String key) {
        if (!has(key)) {
            return new int[0];
        }
        JsonNode node = object.get(key);
        if (!node.isArray()) {
            return new int[] {asInt(key, node)};
        }
        int[] out = new int[node.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = asInt(key, node.get(i));
        }
        return out;
    }

    /** A string or a list of strings; returns null when absent or null. */
    public List<String> stringOrStringList(String key) {
        if (!has(key)) {
            return null;
        }
        JsonNode node = object.get(key);
        List<String> out = new ArrayList<>();
        if (node.isTextual()) {
            out.add(node.textValue());
            return out;
        }
        if (!node.isArray()) {
            throw error(key, "is " + node + "; expected a string or a list of strings");
        }
        for (JsonNode element : node) {
            if (!element.isTextual()) {
                throw error(key, "contains " + element + "; expected a list of strings");
            }
            out.add(element.textValue());
        }
        return out;
    }

    /** The raw node (for fields whose type decides their meaning, like PEFT's target_modules); null if absent. */
    public JsonNode node(String key) {
        return has(key) ? object.get(key) : null;
    }

    /** An object of string keys to numbers, in file order; empty when absent or null. */
    public Map<String, JsonNode> numberMap(String key) {
        Map<String, JsonNode> out = new LinkedHashMap<>();
        if (!has(key)) {
            return out;
        }
        JsonNode node = object.get(key);
        if (!node.isObject()) {
            throw error(key, "is " + node + "; expected a JSON object of name -> number");
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isNumber()) {
                throw error(key, "maps '" + e.getKey() + "' to " + e.getValue() + "; expected a number");
            }
            out.put(e.getKey(), e.getValue());
        }
        return out;
    }

    private void requirePresent(String key, String what) {
        if (!has(key)) {
            throw new ModelFormatException(where(key) + " is missing; expected " + what);
        }
    }

    private int asInt(String key, JsonNode node) {
        // Python writes 4096 as 4096, but a config edited by hand or by numpy may say 4096.0.
        if (node.isIntegralNumber() && node.canConvertToInt()) {
            return node.intValue();
        }
        if (node.isFloatingPointNumber() && node.doubleValue() == Math.rint(node.doubleValue())
                && Math.abs(node.doubleValue()) <= Integer.MAX_VALUE) {
            return (int) node.doubleValue();
        }
        throw error(key, "is " + node + "; expected an integer");
    }

    private double asDouble(String key, JsonNode node) {
        if (!node.isNumber()) {
            throw error(key, "is " + node + "; expected a number");
        }
        return node.doubleValue();
    }

    static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
