package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The tokenizer.json {@code normalizer}: rewrites each piece of text between added tokens. */
sealed interface Normalizer {

    String normalize(String text);

    record Sequence(List<Normalizer> normalizers) implements Normalizer {
        @Override
        public String normalize(String text) {
            for (Normalizer n : normalizers) {
                text = n.normalize(text);
            }
            return text;
        }
    }

    /** SentencePiece's dummy prefix: "▁" before non-empty text. */
    record Prepend(String prepend) implements Normalizer {
        @Override
        public String normalize(String text) {
            return text.isEmpty() ? text : prepend + text;
        }
    }

    record Replace(Pattern pattern, String content) implements Normalizer {
        @Override
        public String normalize(String text) {
            return pattern.matcher(text).replaceAll(Matcher.quoteReplacement(content));
        }
    }

    record Unicode(java.text.Normalizer.Form form) implements Normalizer {
        @Override
        public String normalize(String text) {
            return java.text.Normalizer.normalize(text, form);
        }
    }

    record Lowercase() implements Normalizer {
        @Override
        public String normalize(String text) {
            return text.toLowerCase(Locale.ROOT);
        }
    }

    record Strip(boolean left, boolean right) implements Normalizer {
        @Override
        public String normalize(String text) {
            return UnicodeText.strip(text, left, right);
        }
    }

    static Normalizer parse(JsonField json) {
        return switch (json.type()) {
            case "Sequence" -> new Sequence(json.list("normalizers", Normalizer::parse));
            case "Prepend" -> new Prepend(json.get("prepend").text());
            case "Replace" -> new Replace(StringOrRegex.parse(json.get("pattern")), json.get("content").text());
            case "NFC" -> new Unicode(java.text.Normalizer.Form.NFC);
            case "NFD" -> new Unicode(java.text.Normalizer.Form.NFD);
            case "NFKC" -> new Unicode(java.text.Normalizer.Form.NFKC);
            case "NFKD" -> new Unicode(java.text.Normalizer.Form.NFKD);
            case "Lowercase" -> new Lowercase();
            case "Strip" -> new Strip(json.get("strip_left").bool(true), json.get("strip_right").bool(true));
            default -> throw json.unsupported("normalizer",
                    "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip");
        };
    }
}
