package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Compiles the Oniguruma (Ruby syntax) regexes found in tokenizer.json with java.util.regex.
 *
 * <p>Oniguruma on UTF-8 text gives {@code \s}, {@code \w}, {@code \d} and case-insensitive matching
 * their Unicode meaning, while Java's are ASCII-only by default; {@link Pattern#UNICODE_CHARACTER_CLASS}
 * makes Java's {@code \s} exactly the White_Space property (incl. U+0085, U+00A0, U+3000) and
 * {@code (?i)} Unicode-aware, which is what the GPT-2/Llama-3 split patterns rely on
 * (e.g. {@code \s+(?!\S)} must treat a no-break space as whitespace). Possessive quantifiers,
 * atomic groups and {@code (?i:...)} have the same syntax in both. Script names differ:
 * Oniguruma's {@code \p{Han}} is Java's {@code \p{IsHan}}.
 */
final class OnigRegex {
    private static final Set<String> GENERAL_CATEGORIES = Set.of(
            "L", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No",
            "P", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So",
            "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Cs", "Co", "Cn");

    private OnigRegex() {
    }

    static Pattern compile(String onig, JsonField where) {
        try {
            return Pattern.compile(translate(onig), Pattern.UNICODE_CHARACTER_CLASS);
        } catch (PatternSyntaxException e) {
            throw where.error("regex " + onig + " cannot be compiled: " + e.getDescription());
        }
    }

    static String translate(String onig) {
        StringBuilder out = new StringBuilder(onig.length() + 16);
        for (int i = 0; i < onig.length(); i++) {
            char c = onig.charAt(i);
            if (c != '\\' || i + 1 >= onig.length()) {
                out.append(c);
                continue;
            }
            char next = onig.charAt(i + 1);
            if ((next == 'p' || next == 'P') && i + 2 < onig.length() && onig.charAt(i + 2) == '{') {
                int close = onig.indexOf('}', i + 3);
                if (close > 0) {
                    String name = onig.substring(i + 3, close);
                    boolean negated = name.startsWith("^");
                    if (negated) {
                        name = name.substring(1);
                    }
                    char kind = negated ? (next == 'p' ? 'P' : 'p') : next;
                    String javaName = GENERAL_CATEGORIES.contains(name) || name.startsWith("Is")
                            || name.startsWith("In") ? name : "Is" + name;
                    out.append('\\').append(kind).append('{').append(javaName).append('}');
                    i = close;
                    continue;
                }
            }
            if (next == 'h') {
                // Ruby's \h is a hexadecimal digit, Java's a horizontal space.
                out.append("[0-9a-fA-F]");
                i++;
                continue;
            }
            out.append(c).append(next);
            i++;
        }
        return out.toString();
    }
}
