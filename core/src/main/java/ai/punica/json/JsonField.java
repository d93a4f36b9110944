package ai.punica.json;

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
import java.util.Set;
import java.util.function.Function;

/**
 * One value of a JSON file the server reads (config.json, adapter_config.json, tokenizer.json,
 * generation_config.json, a safetensors index) together with the file and the path that reached it
 * ({@code rope_scaling.factor}, {@code model.merges[17]}), so that every complaint names both and shows
 * what was found: these files are hand-edited more often than one would like. Each reader chooses the
 * exception its callers expect through {@link Errors}.
 *
 * <p>{@code path} is the JSON path from the top ("" for the top itself); {@code node} is the raw value, null
 * when absent. Navigation ({@link #get}, {@link #at}) never fails; a value that is absent, JSON null or missing is
 * {@link #isAbsent}, and typed reads either take a fallback for it or fail.
 */
public record JsonField(String source, String path, JsonNode node, Errors errors) {

    /** Strict about duplicate keys and trailing garbage, which Python's json would also reject or hide. */
    public static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /** Makes the reader's exception from a message (and the parser's exception, or null). */
    @FunctionalInterface
    public interface Errors {
        RuntimeException error(String message, Throwable cause);
    }

    /** The top of a document already parsed; {@code source} names it in messages (usually the file). */
    public static JsonField root(String source, JsonNode node, Errors errors) {
        return new JsonField(source, "", node, errors);
    }

    /** Parses {@code json}, which must be one JSON object; {@code source} names it in messages. */
    public static JsonField parse(String json, String source, Errors errors) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JacksonException e) {
            throw errors.error(source + ": not valid JSON: " + firstLine(e.getOriginalMessage())
                    + " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")", e);
        }
        if (root == null || !root.isObject()) {
            throw errors.error(source + ": expected a JSON object at the top level, found "
                    + (root == null ? "nothing" : root.getNodeType().toString().toLowerCase()), null);
        }
        return root(source, root, errors);
    }

    /** Reads and parses a JSON file; a missing or unreadable file is an error naming it. */
    public static JsonField read(Path file, Errors errors) {
        String text;
        try {
            text = Files.readString(file);
        } catch (NoSuchFileException e) {
            throw errors.error(file + ": file not found", e);
        } catch (IOException e) {
            throw errors.error(file + ": cannot read: " + e, e);
        }
        return parse(text, file.toString(), errors);
    }

    /** The first line of a parser message (Jackson appends the source excerpt on later lines). */
    public static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    // ---- navigation -----------------------------------------------------------------------------

    /** The member {@code name} of this object (absent when this is not an object or lacks it). */
    public JsonField get(String name) {
        JsonNode child = node == null ? null : node.get(name);
        return new JsonField(source, path.isEmpty() ? name : path + "." + name, child, errors);
    }

    /** Element {@code index} of this array (absent when out of range). */
    public JsonField at(int index) {
        return new JsonField(source, path + "[" + index + "]", node == null ? null : node.get(index), errors);
    }

    /** True when there is no value here or it is JSON null (HF writes absent options as null). */
    public boolean isAbsent() {
        return node == null || node.isNull() || node.isMissingNode();
    }

    /** True when member {@code name} is present and not JSON null. */
    public boolean has(String name) {
        return !get(name).isAbsent();
    }

    /** True when member {@code name} is present, even as JSON null (null and absent can mean different things). */
    public boolean present(String name) {
        return node != null && node.get(name) != null;
    }

    /** The member names in file order. */
    public List<String> keys() {
        List<String> keys = new ArrayList<>();
        if (node != null) {
            node.fieldNames().forEachRemaining(keys::add);
        }
        return keys;
    }

    // ---- typed reads of this value --------------------------------------------------------------

    public String text() {
        if (isAbsent() || !node.isTextual()) {
            throw expected("a string");
        }
        return node.textValue();
    }

    public String text(String fallback) {
        return isAbsent() ? fallback : text();
    }

    /** An integer; 4096.0 counts as 4096 (numpy and hand edits write it so). */
    public int intValue() {
        if (!isAbsent() && node.isIntegralNumber() && node.canConvertToInt()) {
            return node.intValue();
        }
        if (!isAbsent() && node.isFloatingPointNumber() && node.doubleValue() == Math.rint(node.doubleValue())
                && Math.abs(node.doubleValue()) <= Integer.MAX_VALUE) {
            return (int) node.doubleValue();
        }
        throw expected("an integer");
    }

    public int intValue(int fallback) {
        return isAbsent() ? fallback : intValue();
    }

    public double doubleValue() {
        if (isAbsent() || !node.isNumber()) {
            throw expected("a number");
        }
        return node.doubleValue();
    }

    public boolean bool(boolean fallback) {
        if (isAbsent()) {
            return fallback;
        }
        if (!node.isBoolean()) {
            throw expected("true or false");
        }
        return node.booleanValue();
    }

    public List<JsonField> elements() {
        if (isAbsent() || !node.isArray()) {
            throw expected("a list");
        }
        List<JsonField> out = new ArrayList<>(node.size());
        for (int i = 0; i < node.size(); i++) {
            out.add(at(i));
        }
        return out;
    }

    /** Each element of the list at member {@code key}, read by {@code read}. */
    public <T> List<T> list(String key, Function<JsonField, T> read) {
        return get(key).elements().stream().map(read).toList();
    }

    /** {@code read} of this value, or null when it is absent (an optional component or setting). */
    public <T> T optional(Function<JsonField, T> read) {
        return isAbsent() ? null : read.apply(this);
    }

    /** Object members in file order. */
    public List<Map.Entry<String, JsonField>> members() {
        if (isAbsent() || !node.isObject()) {
            throw expected("a JSON object");
        }
        List<Map.Entry<String, JsonField>> out = new ArrayList<>(node.size());
        for (Iterator<String> names = node.fieldNames(); names.hasNext(); ) {
            String name = names.next();
            out.add(Map.entry(name, get(name)));
        }
        return out;
    }

    /** The {@code type} member that tokenizer.json's components are told apart by. */
    public String type() {
        return get("type").text();
    }

    // ---- typed reads of a member, with a default for absent -------------------------------------

    public int intValue(String key, int dflt) {
        return get(key).intValue(dflt);
    }

    public int requiredInt(String key) {
        return required(key, "an integer").intValue();
    }

    public double doubleValue(String key, double dflt) {
        JsonField f = get(key);
        return f.isAbsent() ? dflt : f.doubleValue();
    }

    public double requiredDouble(String key) {
        return required(key, "a number").doubleValue();
    }

    /** A number, or null when absent or null. */
    public Double optionalDouble(String key) {
        JsonField f = get(key);
        return f.isAbsent() ? null : f.doubleValue();
    }

    public boolean boolValue(String key, boolean dflt) {
        return get(key).bool(dflt);
    }

    public String string(String key, String dflt) {
        return get(key).text(dflt);
    }

    /**
     * The string at {@code key} when {@code accepted} holds it; otherwise an error that it "is missing" or
     * "is 'value'", then {@code served} (what is served instead: "Punica-J serves LoRA adapters only").
     */
    public String requireOneOf(String key, Set<String> accepted, String served) {
        String value = string(key, null);
        if (value == null || !accepted.contains(value)) {
            throw error(key, (value == null ? "is missing" : "is '" + value + "'") + "; " + served);
        }
        return value;
    }

    /** A nested object, or null when absent or null. */
    public JsonField object(String key) {
        JsonField f = get(key);
        if (f.isAbsent()) {
            return null;
        }
        if (!f.node.isObject()) {
            throw f.expected("a JSON object");
        }
        return f;
    }

    /** The raw member (for fields whose type decides their meaning, like PEFT's target_modules); null if absent. */
    public JsonNode node(String key) {
        JsonField f = get(key);
        return f.isAbsent() ? null : f.node;
    }

    /** An integer or a list of integers (eos_token_id); empty when absent or null. */
    public List<Integer> intOrIntList(String key) {
        JsonField f = get(key);
        if (f.isAbsent()) {
            return List.of();
        }
        if (!f.node.isArray()) {
            return List.of(f.intValue());
        }
        return f.elements().stream().map(JsonField::intValue).toList();
    }

    /** A string or a list of strings; null when absent or null. */
    public List<String> stringOrStringList(String key) {
        JsonField f = get(key);
        if (f.isAbsent()) {
            return null;
        }
        if (f.node.isTextual()) {
            return new ArrayList<>(List.of(f.node.textValue()));
        }
        if (!f.node.isArray()) {
            throw f.expected("a string or a list of strings");
        }
        List<String> out = new ArrayList<>();
        for (JsonField element : f.elements()) {
            out.add(element.text());
        }
        return out;
    }

    /** An object of names to numbers, in file order; empty when absent or null. */
    public Map<String, JsonNode> numberMap(String key) {
        Map<String, JsonNode> out = new LinkedHashMap<>();
        JsonField f = get(key);
        if (f.isAbsent()) {
            return out;
        }
        if (!f.node.isObject()) {
            throw f.expected("a JSON object of name -> number");
        }
        for (Map.Entry<String, JsonField> e : f.members()) {
            if (e.getValue().isAbsent() || !e.getValue().node.isNumber()) {
                throw error(key, "maps '" + e.getKey() + "' to " + e.getValue().node + "; expected a number");
            }
            out.put(e.getKey(), e.getValue().node);
        }
        return out;
    }

    // ---- errors ---------------------------------------------------------------------------------

    /** "config.json: field 'rope_scaling.factor'": the prefix of every message about member {@code key}. */
    public String where(String key) {
        return get(key).where();
    }

    /** The prefix of every message about this value. */
    public String where() {
        return source + ": field '" + (path.isEmpty() ? "(root)" : path) + "'";
    }

    /** An error about member {@code key}, a sentence about it: {@code where(key) + " " + problem} ("is 3; ..."). */
    public RuntimeException error(String key, String problem) {
        return fail(where(key) + " " + problem);
    }

    /** An error about this value: {@code where() + ": " + problem}. */
    public RuntimeException error(String problem) {
        return fail(where() + ": " + problem);
    }

    /** An error for a {@code kind} (normalizer, decoder, ...) whose {@code type} this reader does not know. */
    public RuntimeException unsupported(String kind, String supported) {
        return get("type").error(kind + " type \"" + get("type").text("?") + "\" is not supported (supported: "
                + supported + ")");
    }

    private JsonField required(String key, String what) {
        JsonField f = get(key);
        if (f.isAbsent()) {
            throw f.fail(f.where() + " is missing; expected " + what);
        }
        return f;
    }

    private RuntimeException expected(String what) {
        if (isAbsent()) {
            return fail(where() + " is missing; expected " + what);
        }
        String s = node.toString();
        return fail(where() + " is " + (s.length() > 80 ? s.substring(0, 77) + "..." : s) + "; expected " + what);
    }

    private RuntimeException fail(String message) {
        return errors.error(message, null);
    }
}
