package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.function.BiPredicate;
import java.util.function.IntPredicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tokenizer.json {@code pre_tokenizer}: cuts normalized text into pieces ("words") that the
 * BPE model encodes independently. Empty pieces are dropped, as HF does.
 */
sealed interface PreTokenizer {

    /** A piece of text; {@code atOrigin} is true when it starts at offset 0 of the original input. */
    record Piece(String text, boolean atOrigin) {
    }

    void split(Piece piece, List<Piece> out);

    default List<Piece> apply(List<Piece> pieces) {
        List<Piece> out = new ArrayList<>(pieces.size() * 2);
        for (Piece p : pieces) {
            split(p, out);
        }
        return out;
    }

    /** HF's {@code SplitDelimiterBehavior}: what to do with the text a pattern matched. */
    enum Behavior {
        REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS;

        static Behavior parse(JsonField json, Behavior fallback) {
            if (json.isAbsent()) {
                return fallback;
            }
            return switch (json.text()) {
                case "Removed" -> REMOVED;
                case "Isolated" -> ISOLATED;
                case "MergedWithPrevious" -> MERGED_WITH_PREVIOUS;
                case "MergedWithNext" -> MERGED_WITH_NEXT;
                case "Contiguous" -> CONTIGUOUS;
                default -> throw json.error("unknown split behavior \"" + json.text()
                        + "\" (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
            };
        }
    }

    /**
     * Splits {@code piece} at the given [start, end, isMatch] spans (covering the whole text, in
     * order) according to {@code behavior}, mirroring HF's {@code NormalizedString::split}.
     */
    static void splitSpans(Piece piece, List<int[]> spans, Behavior behavior, List<Piece> out) {
        List<int[]> merged = new ArrayList<>(spans.size());
        switch (behavior) {
            case ISOLATED -> merged.addAll(spans);
            case REMOVED -> {
                for (int[] s : spans) {
                    if (s[2] == 0) {
                        merged.add(s);
                    }
                }
            }
            case MERGED_WITH_PREVIOUS -> joinSpans(spans, (match, previousMatch) -> match && !previousMatch, merged);
            case MERGED_WITH_NEXT -> {
                // the same as MERGED_WITH_PREVIOUS, walking the spans from the end
                joinSpans(spans.reversed(), (match, previousMatch) -> match && !previousMatch, merged);
                Collections.reverse(merged);
            }
            case CONTIGUOUS -> joinSpans(spans, (match, previousMatch) -> match == previousMatch, merged);
        }
        String text = piece.text();
        for (int[] s : merged) {
            if (s[0] != s[1]) {
                out.add(new Piece(text.substring(s[0], s[1]), piece.atOrigin() && s[0] == 0));
            }
        }
    }

    /**
     * Adds {@code spans} (in the order given) to {@code merged}, each one joined to the span added before it
     * when {@code joins(isMatch, previousIsMatch)}; the joined span covers both.
     */
    private static void joinSpans(List<int[]> spans, BiPredicate<Boolean, Boolean> joins, List<int[]> merged) {
        boolean previousMatch = false;
        for (int[] s : spans) {
            boolean isMatch = s[2] == 1;
            if (joins.test(isMatch, previousMatch) && !merged.isEmpty()) {
                int[] last = merged.getLast();
                last[0] = Math.min(last[0], s[0]);
                last[1] = Math.max(last[1], s[1]);
            } else {
                merged.add(new int[] {s[0], s[1], 0});
            }
            previousMatch = isMatch;
        }
    }

    static List<int[]> regexSpans(Pattern pattern, String text, boolean invert) {
        List<int[]> spans = new ArrayList<>();
        int matched = invert ? 0 : 1;
        int previous = 0;
        Matcher m = pattern.matcher(text);
        while (m.find()) {
            if (m.start() != previous) {
                spans.add(new int[] {previous, m.start(), 1 - matched});
            }
            spans.add(new int[] {m.start(), m.end(), matched});
            previous = m.end();
        }
        if (previous != text.length()) {
            spans.add(new int[] {previous, text.length(), 1 - matched});
        }
        return spans;
    }

    /** Spans in which each single code point satisfying {@code test} is one match. */
    static List<int[]> charSpans(String text, IntPredicate test) {
        List<int[]> spans = new ArrayList<>();
        int previous = 0;
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            int n = Character.charCount(cp);
            if (test.test(cp)) {
                if (i != previous) {
                    spans.add(new int[] {previous, i, 0});
                }
                spans.add(new int[] {i, i + n, 1});
                previous = i + n;
            }
            i += n;
        }
        if (previous != text.length()) {
            spans.add(new int[] {previous, text.length(), 0});
        }
        return spans;
    }

    record Sequence(List<PreTokenizer> preTokenizers) implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            out.addAll(apply(List.of(piece)));
        }

        @Override
        public List<Piece> apply(List<Piece> pieces) {
            for (PreTokenizer p : preTokenizers) {
                pieces = p.apply(pieces);
            }
            return pieces;
        }
    }

    record Split(Pattern pattern, Behavior behavior, boolean invert) implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            splitSpans(piece, regexSpans(pattern, piece.text(), invert), behavior, out);
        }
    }

    /** GPT-2 byte-level: optional leading space, optional GPT-2 regex split, then bytes to alphabet chars. */
    record ByteLevel(boolean addPrefixSpace, boolean useRegex) implements PreTokenizer {
        static final Pattern GPT2 = Pattern.compile(
                "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                Pattern.UNICODE_CHARACTER_CLASS);

        @Override
        public void split(Piece piece, List<Piece> out) {
            String text = piece.text();
            if (addPrefixSpace && !text.startsWith(" ")) {
                text = " " + text;
            }
            Piece prefixed = new Piece(text, piece.atOrigin());
            List<Piece> parts = new ArrayList<>();
            if (useRegex) {
                splitSpans(prefixed, regexSpans(GPT2, text, false), Behavior.ISOLATED, parts);
            } else if (!text.isEmpty()) {
                parts.add(prefixed);
            }
            for (Piece p : parts) {
                out.add(new Piece(ByteLevelAlphabet.encode(p.text()), p.atOrigin()));
            }
        }
    }

    /** SentencePiece-style: spaces become the replacement ("▁"), a prefix is added, split before each "▁". */
    record Metaspace(String replacement, String prependScheme, boolean split) implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            String text = piece.text().replace(" ", replacement);
            if (!text.isEmpty() && !text.startsWith(replacement)
                    && (prependScheme.equals("always") || (prependScheme.equals("first") && piece.atOrigin()))) {
                text = replacement + text;
            }
            Piece replaced = new Piece(text, piece.atOrigin());
            if (split) {
                int r = replacement.codePointAt(0);
                splitSpans(replaced, charSpans(text, cp -> cp == r), Behavior.MERGED_WITH_NEXT, out);
            } else if (!text.isEmpty()) {
                out.add(replaced);
            }
        }
    }

    record Digits(boolean individualDigits) implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            splitSpans(piece, charSpans(piece.text(), UnicodeText::isNumeric),
                    individualDigits ? Behavior.ISOLATED : Behavior.CONTIGUOUS, out);
        }
    }

    /** HF's Whitespace: keeps runs of word characters and runs of other non-space characters. */
    record Whitespace() implements PreTokenizer {
        static final Pattern WORDS = Pattern.compile("\\w+|[^\\w\\s]+", Pattern.UNICODE_CHARACTER_CLASS);

        @Override
        public void split(Piece piece, List<Piece> out) {
            splitSpans(piece, regexSpans(WORDS, piece.text(), true), Behavior.REMOVED, out);
        }
    }

    record WhitespaceSplit() implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            splitSpans(piece, charSpans(piece.text(), UnicodeText::isWhiteSpace), Behavior.REMOVED, out);
        }
    }

    record Punctuation(Behavior behavior) implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            splitSpans(piece, charSpans(piece.text(), UnicodeText::isPunctuation), behavior, out);
        }
    }

    /** BERT: whitespace split, then each punctuation character on its own. */
    record Bert() implements PreTokenizer {
        @Override
        public void split(Piece piece, List<Piece> out) {
            List<Piece> words = new ArrayList<>();
            new WhitespaceSplit().split(piece, words);
            for (Piece w : words) {
                new Punctuation(Behavior.ISOLATED).split(w, out);
            }
        }
    }

    static PreTokenizer parse(JsonField json) {
        return switch (json.type()) {
            case "Sequence" -> new Sequence(json.list("pretokenizers", PreTokenizer::parse));
            case "Split" -> {
                Pattern pattern = StringOrRegex.parse(json.get("pattern"));
                yield new Split(pattern, Behavior.parse(json.get("behavior"), Behavior.ISOLATED),
                        json.get("invert").bool(false));
            }
            case "ByteLevel" -> new ByteLevel(json.get("add_prefix_space").bool(true), json.get("use_regex").bool(true));
            case "Metaspace" -> new Metaspace(json.get("replacement").text("\u2581"), prependScheme(json),
                    json.get("split").bool(true));
            case "Digits" -> new Digits(json.get("individual_digits").bool(false));
            case "Whitespace" -> new Whitespace();
            case "WhitespaceSplit" -> new WhitespaceSplit();
            case "Punctuation" -> new Punctuation(Behavior.parse(json.get("behavior"), Behavior.ISOLATED));
            case "BertPreTokenizer" -> new Bert();
            default -> throw json.unsupported("pre_tokenizer",
                    "Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer");
        };
    }

    /** "first", "always" or "never"; older files say {@code add_prefix_space} instead. */
    static String prependScheme(JsonField json) {
        if (json.has("prepend_scheme")) {
            String scheme = json.get("prepend_scheme").text();
            if (!scheme.equals("first") && !scheme.equals("always") && !scheme.equals("never")) {
                throw json.get("prepend_scheme").error("expected \"first\", \"always\" or \"never\", found \"" + scheme + "\"");
            }
            return scheme;
        }
        return json.get("add_prefix_space").bool(true) ? "always" : "never";
    }
}
