package ai.punica.server;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonPointer;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonStreamContext;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationContext;
import com.fasterxml.jackson.databind.JsonDeserializer;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.cfg.CoercionAction;
import com.fasterxml.jackson.databind.cfg.CoercionInputShape;
import com.fasterxml.jackson.databind.type.LogicalType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.deser.DeserializationProblemHandler;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.module.SimpleModule;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Reads a request body into its record ({@link OpenAiRequests}) in one pass of Jackson binding.
 * Malformed JSON, bytes that are not UTF-8 and values of the wrong type are 400s whose {@code param}
 * names the field ({@code messages[2].role}) and whose message says what was expected and what came.
 * Unknown fields are accepted and reported back, as vLLM accepts and logs them: clients send fields
 * of newer API versions ({@code store}, {@code metadata}, {@code service_tier}, ...) that change
 * nothing here.
 */
final class RequestBodies {
    private static final String IGNORED = "punica.ignoredFields";
    private static final ObjectMapper MAPPER = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            // "5" is not 5 and 1 is not true: a client with such a body has a bug worth hearing about.
            .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
            .withCoercionConfig(LogicalType.Textual, c -> c.setCoercion(CoercionInputShape.Integer, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.Float, CoercionAction.Fail)
                    .setCoercion(CoercionInputShape.Boolean, CoercionAction.Fail))
            .addModule(new SimpleModule("integral-numbers")
                    .addDeserializer(Integer.class, new IntegralDeserializer<>(Integer.class))
                    .addDeserializer(Long.class, new IntegralDeserializer<>(Long.class)))
            .addHandler(new UnknownFieldCollector())
            .build();

    private RequestBodies() {
    }

    /** A bound body and the fields it carried that this server does not know (ignored). */
    record Bound<T>(T body, List<String> ignoredFields) {
    }

    /** Parses and binds a whole request body. */
    static <T> Bound<T> read(byte[] bytes, Class<T> type) {
        JsonNode tree = parse(bytes);
        List<String> ignored = new ArrayList<>();
        try {
            T body = MAPPER.readerFor(type).withAttribute(IGNORED, ignored).readValue(tree);
            return new Bound<>(body, List.copyOf(ignored));
        } catch (JsonMappingException e) {
            throw wrongValue(e, tree);
        } catch (IOException e) {
            throw ApiException.badRequest(null, "Malformed JSON: " + e.getMessage());
        }
    }

    /**
     * The body as a JSON tree. Bytes that are not UTF-8 are refused first, so the message can say
     * where they are (Jackson would report them as a parse error deep inside a string).
     */
    private static JsonNode parse(byte[] body) {
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
        } catch (IOException e) {
            throw ApiException.badRequest(null, "Malformed JSON: " + e.getMessage());
        }
        if (root == null || !root.isObject()) {
            throw ApiException.badRequest(null, "The request body must be a JSON object, got "
                    + (root == null ? "nothing" : kind(root)) + ".");
        }
        return root;
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

    /** A value Jackson could not bind: name the field, the type it needs and the value that came. */
    private static ApiException wrongValue(JsonMappingException e, JsonNode tree) {
        StringBuilder param = new StringBuilder();
        StringBuilder pointer = new StringBuilder();
        for (JsonMappingException.Reference ref : e.getPath()) {
            if (ref.getFieldName() != null) {
                param.append(param.isEmpty() ? "" : ".").append(ref.getFieldName());
                pointer.append('/').append(ref.getFieldName().replace("~", "~0").replace("/", "~1"));
            } else if (ref.getIndex() >= 0) {
                param.append('[').append(ref.getIndex()).append(']');
                pointer.append('/').append(ref.getIndex());
            }
        }
        String name = param.isEmpty() ? null : param.toString();
        JsonNode got = tree.at(JsonPointer.compile(pointer.toString()));
        Class<?> target = e instanceof com.fasterxml.jackson.databind.exc.MismatchedInputException m
                ? m.getTargetType() : null;
        String gotText = got.isMissingNode() ? "" : ", got " + kind(got) + " " + abbreviate(got);
        return ApiException.badRequest(name, "`" + name + "` must be " + expected(target) + gotText + ".");
    }

    private static String expected(Class<?> target) {
        if (target == null) {
            return "a valid value";
        }
        if (target == Integer.class || target == int.class || target == Long.class || target == long.class) {
            return "an integer";
        }
        if (target == Float.class || target == float.class || target == Double.class || target == double.class) {
            return "a number";
        }
        if (target == Boolean.class || target == boolean.class) {
            return "a boolean (true or false)";
        }
        if (target == String.class) {
            return "a string";
        }
        if (List.class.isAssignableFrom(target)) {
            return "an array";
        }
        return "an object";
    }

    static String kind(JsonNode v) {
        return switch (v.getNodeType()) {
            case STRING -> "a string";
            case NUMBER -> v.isIntegralNumber() ? "an integer" : "a number";
            case BOOLEAN -> "a boolean";
            case ARRAY -> "an array";
            case OBJECT -> "an object";
            case NULL -> "null";
            default -> v.getNodeType().name().toLowerCase(Locale.ROOT);
        };
    }

    static String abbreviate(JsonNode v) {
        String s = v.toString();
        return s.length() <= 60 ? s : s.substring(0, 57) + "...";
    }

    /** Records each unknown field's path ({@code messages[0].mood}) and skips its value. */
    private static final class UnknownFieldCollector extends DeserializationProblemHandler {
        @Override
        @SuppressWarnings("unchecked")
        public boolean handleUnknownProperty(DeserializationContext ctxt, JsonParser p, JsonDeserializer<?> deserializer,
                                             Object beanOrClass, String propertyName) throws IOException {
            Object sink = ctxt.getAttribute(IGNORED);
            if (sink instanceof List<?> list) {
                // At an object or array value the parser has already entered it; its holder is one level up.
                JsonStreamContext holder = p.currentToken() == JsonToken.START_OBJECT
                        || p.currentToken() == JsonToken.START_ARRAY ? p.getParsingContext().getParent()
                        : p.getParsingContext();
                ((List<String>) list).add(path(holder) + propertyName);
            }
            p.skipChildren();
            return true;
        }

        /** Where the object holding the unknown field sits: {@code ""}, {@code "stream_options."}, {@code "messages[0]."}. */
        private static String path(JsonStreamContext holder) {
            List<JsonStreamContext> chain = new ArrayList<>();
            for (JsonStreamContext c = holder.getParent(); c != null && !c.inRoot(); c = c.getParent()) {
                chain.addFirst(c);
            }
            StringBuilder out = new StringBuilder();
            for (JsonStreamContext c : chain) {
                if (c.inArray()) {
                    out.append('[').append(c.getCurrentIndex()).append(']');
                } else if (c.getCurrentName() != null) {
                    out.append(out.isEmpty() ? "" : ".").append(c.getCurrentName());
                }
            }
            return out.isEmpty() ? "" : out + ".";
        }
    }

    /** Integers as pydantic reads them: {@code 16} and {@code 16.0}, but not {@code 16.5} or {@code "16"}. */
    private static final class IntegralDeserializer<T extends Number> extends JsonDeserializer<T> {
        private final Class<T> type;

        IntegralDeserializer(Class<T> type) {
            this.type = type;
        }

        @Override
        public T deserialize(JsonParser p, DeserializationContext ctxt) throws IOException {
            JsonToken t = p.currentToken();
            Long value = null;
            if (t == JsonToken.VALUE_NUMBER_INT && (type == Long.class ? p.getNumberType() != JsonParser.NumberType.BIG_INTEGER
                    : p.getNumberType() == JsonParser.NumberType.INT)) {
                value = p.getLongValue();
            } else if (t == JsonToken.VALUE_NUMBER_FLOAT) {
                double d = p.getDoubleValue();
                if (d == Math.rint(d) && Math.abs(d) < (type == Long.class ? 0x1p62 : 0x1p31)) {
                    value = (long) d;
                }
            }
            if (value == null) {
                return type.cast(ctxt.handleUnexpectedToken(type, p));
            }
            return type == Long.class ? type.cast(value) : type.cast(value.intValue());
        }
    }
}
