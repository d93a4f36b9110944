package ai.punica.jinja;

/**
 * Escaping a string character by character, as JSON ({@code tojson}), Python's {@code repr} and HTML markup
 * ({@code escape}) do it: a {@link Rule} says what each character becomes, or keeps it.
 */
final class Escapes {
    private Escapes() {
    }

    /** What character {@code c} is written as, or null to write it as it is. */
    @FunctionalInterface
    interface Rule {
        String escape(char c);
    }

    /** Appends {@code s} to {@code sb} with every character the rule escapes replaced. */
    static void append(StringBuilder sb, String s, Rule rule) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            String escaped = rule.escape(c);
            if (escaped == null) {
                sb.append(c);
            } else {
                sb.append(escaped);
            }
        }
    }

    /** The backslash escapes JSON and Python share: {@code \\ \n \r \t}; null for any other character. */
    static String backslash(char c) {
        return switch (c) {
            case '\\' -> "\\\\";
            case '\n' -> "\\n";
            case '\r' -> "\\r";
            case '\t' -> "\\t";
            default -> null;
        };
    }
}
