package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.regex.Pattern;

/** tokenizer.json's {@code {"String": "..."}} or {@code {"Regex": "..."}} pattern, as a Java regex. */
final class StringOrRegex {
    private StringOrRegex() {
    }

    static Pattern parse(JsonField json) {
        if (json.has("String")) {
            return Pattern.compile(Pattern.quote(json.get("String").text()));
        }
        if (json.has("Regex")) {
            return OnigRegex.compile(json.get("Regex").text(), json.get("Regex"));
        }
        throw json.error("expected {\"String\": ...} or {\"Regex\": ...}");
    }

    /** The literal string of a {@code {"String": ...}} pattern, or null for a regex. */
    static String literal(JsonField json) {
        return json.has("String") ? json.get("String").text() : null;
    }
}
