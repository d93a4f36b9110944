package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * tokenizer.json's {@code added_tokens}: strings such as {@code <|eot_id|>} that are cut out of the
 * input before normalization and BPE, exactly like HF's {@code AddedVocabulary}: tokens with
 * {@code normalized: false} are found in the raw text, the others in each normalized piece; at
 * each position the longest token wins (leftmost-longest), and {@code lstrip}/{@code rstrip}
 * swallow the whitespace around a match, {@code single_word} rejects matches inside a word.
 */
final class AddedVocabulary {

    record AddedToken(int id, String content, boolean special, boolean lstrip, boolean rstrip, boolean singleWord,
            boolean normalized) {
    }

    /** A piece of input: an added token ({@code tokenId >= 0}) or text still to be tokenized. */
    record Segment(String text, int tokenId, boolean atOrigin) {
    }

    /** Patterns to look for, grouped by first char and longest first, for leftmost-longest matching. */
    private static final class PatternSet {
        final Map<Character, List<Map.Entry<String, AddedToken>>> byFirstChar = new HashMap<>();

        void add(String pattern, AddedToken token) {
            if (pattern.isEmpty()) {
                return;
            }
            var list = byFirstChar.computeIfAbsent(pattern.charAt(0), c -> new ArrayList<>());
            list.add(Map.entry(pattern, token));
            list.sort((a, b) -> b.getKey().length() - a.getKey().length());
        }

        boolean isEmpty() {
            return byFirstChar.isEmpty();
        }
    }

    private final List<AddedToken> tokens;
    private final PatternSet raw = new PatternSet();
    private final PatternSet normalizedSet = new PatternSet();

    AddedVocabulary(List<AddedToken> tokens, Normalizer normalizer) {
        this.tokens = List.copyOf(tokens);
        for (AddedToken t : tokens) {
            if (t.normalized()) {
                normalizedSet.add(normalizer == null ? t.content() : normalizer.normalize(t.content()), t);
            } else {
                raw.add(t.content(), t);
            }
        }
    }

    static AddedVocabulary parse(JsonField json, Normalizer normalizer) {
        List<AddedToken> tokens = new ArrayList<>();
        if (!json.isAbsent()) {
            for (JsonField t : json.elements()) {
                boolean special = t.get("special").bool(false);
                tokens.add(new AddedToken(t.get("id").intValue(), t.get("content").text(), special,
                        t.get("lstrip").bool(false), t.get("rstrip").bool(false), t.get("single_word").bool(false),
                        t.get("normalized").bool(!special)));
            }
        }
        return new AddedVocabulary(tokens, normalizer);
    }

    List<AddedToken> tokens() {
        return tokens;
    }

    /** Splits raw input on the tokens that match before normalization. */
    List<Segment> splitRaw(String text) {
        List<Segment> out = new ArrayList<>();
        split(text, true, raw, out);
        return out;
    }

    /** Splits one normalized piece on the tokens that match after normalization. */
    void splitNormalized(String text, boolean atOrigin, List<Segment> out) {
        split(text, atOrigin, normalizedSet, out);
    }

    private static void split(String text, boolean atOrigin, PatternSet patterns, List<Segment> out) {
        if (patterns.isEmpty()) {
            out.add(new Segment(text, -1, atOrigin));
            return;
        }
        int segmentStart = 0;
        int i = 0;
        while (i < text.length()) {
            var candidates = patterns.byFirstChar.get(text.charAt(i));
            Map.Entry<String, AddedToken> found = null;
            if (candidates != null) {
                for (var c : candidates) {
                    if (text.startsWith(c.getKey(), i)) {
                        found = c;
                        break;
                    }
                }
            }
            if (found == null) {
                i++;
                continue;
            }
            AddedToken token = found.getValue();
            int start = i;
            int stop = i + found.getKey().length();
            if (token.singleWord() && (endsWithWordChar(text, start) || startsWithWordChar(text, stop))) {
                i = stop;
                continue;
            }
            if (token.lstrip()) {
                while (start > segmentStart && UnicodeText.isWhiteSpace(text.codePointBefore(start))) {
                    start -= Character.charCount(text.codePointBefore(start));
                }
            }
            if (token.rstrip()) {
                while (stop < text.length() && UnicodeText.isWhiteSpace(text.codePointAt(stop))) {
                    stop += Character.charCount(text.codePointAt(stop));
                }
            }
            if (start > segmentStart) {
                out.add(new Segment(text.substring(segmentStart, start), -1, atOrigin && segmentStart == 0));
            }
            out.add(new Segment(text.substring(start, stop), token.id(), atOrigin && start == 0));
            segmentStart = stop;
            i = stop;
        }
        if (segmentStart < text.length() || text.isEmpty()) {
            out.add(new Segment(text.substring(segmentStart), -1, atOrigin && segmentStart == 0));
        }
    }

    private static boolean endsWithWordChar(String text, int end) {
        return end > 0 && UnicodeText.isAlphanumeric(text.codePointBefore(end));
    }

    private static boolean startsWithWordChar(String text, int start) {
        return start < text.length() && UnicodeText.isAlphanumeric(text.codePointAt(start));
    }
}
