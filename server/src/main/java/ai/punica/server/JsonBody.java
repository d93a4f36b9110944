package ai.punica.server;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A JSON object from a request body, read field by field with the checks vLLM's request models make:
 * every field has one type, unknown fields are refused (vLLM's protocol models forbid extras, so a
 * misspelt {@code max_token} is an error rather than a silently ignored value), and every message
 * names the field ({@code param}) and the value that was wrong.
 */
final class JsonBody {
    private static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    private final ObjectNode node;
    private final String path;

    private JsonBody(ObjectNode node, String path) {
        this.node = node;
        this.path = path;
    }

    /**
     * Parses a whole request body. Bytes that are not UTF-8 are refused before JSON parsing so the
     * message can say where they are (Jackson would report them as a parse error deep in a string).
     */
    static JsonBody parse(byte[] body) {
        if (body.length == 0) {
            throw ApiException.badRequest(null, "The request body is empty; expected a JSON object.");
        }
        checkUtf8(body);
        JsonNode root;
        try (JsonParser parser = MAPPER.createParser(body)) {
            root = MAPPER.readTree(parser);
            if (parser.nextToken() != null) {
                throw ApiException.badRequest(null, "Malformed JSON: unexpected content after the top-level object.");
            }
        } catch (JsonProcessingException e) {
            var at = e.getLocation();
            String where = at == null ? "" : " (line " + at.getLineNr() + ", column " + at.getColumnNr() + ")";
            throw ApiException.badRequest(null, "Malformed JSON" + where + ": " + e.getOriginalMessage());
        } catch (java.io.IOException e) {
            throw ApiException.badRequest(null, "Malformed JSON: " + e.getMessage());
        }
        if (root == null || !root.isObject()) {
            throw ApiException.badRequest(null, "The request body must be a JSON object, got "
                    + (root == null ? "nothing" : kind(root)) + ".");
        }
        return new JsonBody((ObjectNode) root, "");
    }

    private static void checkUtf8(byte[] body) {
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(body);
        try {
            decoder.decode(in);
        } catch (CharacterCodingException e) {
            int at = in.position();
            throw ApiException.badRequest(null, String.format(
                    "The request body is not valid UTF-8: byte 0x%02x at offset %d. Send JSON encoded as UTF-8.",
                    body[at] & 0xff, at));
        }
    }

    /** Refuses the first field not in {@code known}, naming it (as vLLM does for extra fields). */
    JsonBody allowOnly(Set<String> known) {
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String name = it.next();
            if (!known.contains(name)) {
                throw ApiException.badRequest(path + name, "Unrecognized request field `" + path + name
                        + "`. Remove it; the fields this endpoint accepts are: " + String.join(", ",
                        known.stream().sorted().toList()) + ".");
            }
        }
        return this;
    }

    /** Present and not JSON null. */
    boolean has(String name) {
        JsonNode v = node.get(name);
        return v != null && !v.isNull();
    }

    JsonNode raw(String name) {
        JsonNode v = node.get(name);
        return v == null || v.isNull() ? null : v;
    }

    String param(String name) {
        return path + name;
    }

    String requiredString(String name) {
        JsonNode v = raw(name);
        if (v == null) {
            throw ApiException.badRequest(param(name), "`" + param(name) + "` is required.");
        }
        if (!v.isTextual()) {
            throw wrongType(name, "a string", v);
        }
        return v.textValue();
    }

    String stringOr(String name, String fallback) {
        JsonNode v = raw(name);
        if (v == null) {
            return fallback;
        }
        if (!v.isTextual()) {
            throw wrongType(name, "a string", v);
        }
        return v.textValue();
    }

    boolean boolOr(String name, boolean fallback) {
        JsonNode v = raw(name);
        if (v == null) {
            return fallback;
        }
        if (!v.isBoolean()) {
            throw wrongType(name, "a boolean (true or false)", v);
        }
        return v.booleanValue();
    }

    /** An integer; an integral float such as {@code 16.0} is accepted, as pydantic does. */
    Integer intOrNull(String name) {
        Long v = longOrNull(name);
        if (v == null) {
            return null;
        }
        if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
            throw ApiException.badRequest(param(name), "`" + param(name) + "` is out of range: " + v + ".");
        }
        return v.intValue();
    }

    int intOr(String name, int fallback) {
        Integer v = intOrNull(name);
        return v == null ? fallback : v;
    }

    Long longOrNull(String name) {
        JsonNode v = raw(name);
        if (v == null) {
            return null;
        }
        if (v.isIntegralNumber() && v.canConvertToLong()) {
            return v.longValue();
        }
        if (v.isFloatingPointNumber() && v.doubleValue() == Math.rint(v.doubleValue())
                && Math.abs(v.doubleValue()) < 0x1p62) {
            return (long) v.doubleValue();
        }
        throw wrongType(name, "an integer", v);
    }

    float floatOr(String name, float fallback) {
        JsonNode v = raw(name);
        if (v == null) {
            return fallback;
        }
        if (!v.isNumber()) {
            throw wrongType(name, "a number", v);
        }
        return (float) v.doubleValue();
    }

    /** OpenAI's {@code stop}: a string or an array of strings. */
    List<String> stringOrStrings(String name) {
        JsonNode v = raw(name);
        if (v == null) {
            return List.of();
        }
        if (v.isTextual()) {
            return List.of(v.textValue());
        }
        if (!v.isArray()) {
            throw wrongType(name, "a string or an array of strings", v);
        }
        List<String> out = new ArrayList<>();
        for (JsonNode e : v) {
            if (!e.isTextual()) {
                throw wrongType(name, "a string or an array of strings", v);
            }
            out.add(e.textValue());
        }
        return out;
    }

    List<Integer> intsOrEmpty(String name) {
        JsonNode v = raw(name);
        if (v == null) {
            return List.of();
        }
        if (!v.isArray()) {
            throw wrongType(name, "an array of integers", v);
        }
        List<Integer> out = new ArrayList<>();
        for (JsonNode e : v) {
            if (!e.isIntegralNumber() || !e.canConvertToInt()) {
                throw wrongType(name, "an array of integers", v);
            }
            out.add(e.intValue());
        }
        return out;
    }

    /** A nested object, checked with the same rules; null when absent. */
    JsonBody objectOrNull(String name) {
        JsonNode v = raw(name);
        if (v == null) {
            return null;
        }
        if (!v.isObject()) {
            throw wrongType(name, "an object", v);
        }
        return new JsonBody((ObjectNode) v, path + name + ".");
    }

    /** Elements of an array field that must hold objects, each with its own path ({@code messages[2].}). */
    List<JsonBody> objects(String name) {
        JsonNode v = raw(name);
        if (v == null || !v.isArray()) {
            throw v == null ? ApiException.badRequest(param(name), "`" + param(name) + "` is required.")
                    : wrongType(name, "an array of objects", v);
        }
        List<JsonBody> out = new ArrayList<>();
        int i = 0;
        for (JsonNode e : v) {
            if (!e.isObject()) {
                throw ApiException.badRequest(param(name) + "[" + i + "]", "`" + param(name) + "[" + i
                        + "]` must be an object, got " + kind(e) + ".");
            }
            out.add(new JsonBody((ObjectNode) e, path + name + "[" + i + "]."));
            i++;
        }
        return out;
    }

    /**
     * Fields OpenAI defines that this server does not implement: accepted when they hold their
     * neutral value (clients often send the defaults explicitly), refused otherwise with a message
     * that says so, rather than silently ignored.
     */
    void requireNeutral(String name, Object neutral) {
        JsonNode v = raw(name);
        if (v == null) {
            return;
        }
        boolean neutralValue = switch (neutral) {
            case Boolean b -> v.isBoolean() && v.booleanValue() == b;
            case Integer i -> v.isNumber() && v.doubleValue() == i;
            case String s -> v.isTextual() && v.textValue().equals(s);
            case Map<?, ?> m -> v.isObject() && v.isEmpty();
            case List<?> l -> v.isArray() && v.isEmpty();
            default -> false;
        };
        if (!neutralValue) {
            throw ApiException.badRequest(param(name), "`" + param(name) + "` is not supported by this server"
                    + " (got " + abbreviate(v) + "); omit it.");
        }
    }

    ApiException wrongType(String name, String expected, JsonNode got) {
        return ApiException.badRequest(param(name), "`" + param(name) + "` must be " + expected + ", got "
                + kind(got) + " " + abbreviate(got) + ".");
    }

    static String kind(JsonNode v) {
        return switch (v.getNodeType()) {
            case STRING -> "a string";
            case NUMBER -> v.isIntegralNumber() ? "an integer" : "a number";
            case BOOLEAN -> "a boolean";
            case ARRAY -> "an array";
            case OBJECT -> "an object";
            case NULL -> "null";
            default -> v.getNodeType().name().toLowerCase(java.util.Locale.ROOT);
        };
    }

    private static String abbreviate(JsonNode v) {
        String s = v.toString();
        return s.length() <= 60 ? s : s.substring(0, 57) + "...";
    }
}
