package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tokenizer.json {@code decoder}: turns token strings back into text. Each step maps a list of
 * token strings to a new list (HF's {@code decode_chain}); the final text is their concatenation.
 */
sealed interface Decoder {

    List<String> decodeChain(List<String> tokens);

    default String decode(List<String> tokens) {
        return String.join("", decodeChain(tokens));
    }

    record Sequence(List<Decoder> decoders) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            for (Decoder d : decoders) {
                tokens = d.decodeChain(tokens);
            }
            return tokens;
        }
    }

    /**
     * Alphabet characters back to bytes, all tokens together, then lossy UTF-8. A token with a
     * character outside the alphabet (an added token such as "<|eot_id|>" with non-Latin text)
     * contributes its own UTF-8 bytes unchanged.
     */
    record ByteLevel() implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            int capacity = 0;
            for (String t : tokens) {
                capacity += t.length() * 3;
            }
            byte[] bytes = new byte[capacity];
            int n = 0;
            for (String t : tokens) {
                int start = n;
                boolean inAlphabet = true;
                for (int i = 0; i < t.length(); i++) {
                    int b = ByteLevelAlphabet.byteOf(t.charAt(i));
                    if (b < 0) {
                        inAlphabet = false;
                        break;
                    }
                    bytes[n++] = (byte) b;
                }
                if (!inAlphabet) {
                    n = start;
                    for (byte b : t.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
                        bytes[n++] = b;
                    }
                }
            }
            return List.of(UnicodeText.utf8Lossy(bytes, n));
        }
    }

    /** "▁" back to " "; the first token loses its "▁" when a prefix space was added at encode time. */
    record Metaspace(int replacement, boolean stripFirst) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                String t = tokens.get(i);
                StringBuilder sb = new StringBuilder(t.length());
                for (int j = 0; j < t.length(); ) {
                    int cp = t.codePointAt(j);
                    if (cp == replacement) {
                        if (!(i == 0 && stripFirst)) {
                            sb.append(' ');
                        }
                    } else {
                        sb.appendCodePoint(cp);
                    }
                    j += Character.charCount(cp);
                }
                out.add(sb.toString());
            }
            return out;
        }
    }

    record Replace(Pattern pattern, String content) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            String replacement = Matcher.quoteReplacement(content);
            return tokens.stream().map(t -> pattern.matcher(t).replaceAll(replacement)).toList();
        }
    }

    /** Runs of "<0xNN>" tokens become the UTF-8 text they spell, or one U+FFFD per byte if invalid. */
    record ByteFallback() implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            byte[] pending = new byte[16];
            int n = 0;
            for (String t : tokens) {
                int b = byteToken(t);
                if (b >= 0) {
                    if (n == pending.length) {
                        pending = java.util.Arrays.copyOf(pending, n * 2);
                    }
                    pending[n++] = (byte) b;
                    continue;
                }
                n = flush(pending, n, out);
                out.add(t);
            }
            flush(pending, n, out);
            return out;
        }

        private static int flush(byte[] pending, int n, List<String> out) {
            if (n > 0) {
                String s = UnicodeText.utf8Strict(pending, n);
                if (s != null) {
                    out.add(s);
                } else {
                    for (int i = 0; i < n; i++) {
                        out.add("\uFFFD");
                    }
                }
            }
            return 0;
        }

        static int byteToken(String t) {
            if (t.length() == 6 && t.startsWith("<0x") && t.charAt(5) == '>') {
                int hi = Character.digit(t.charAt(3), 16);
                int lo = Character.digit(t.charAt(4), 16);
                if (hi >= 0 && lo >= 0) {
                    return hi * 16 + lo;
                }
            }
            return -1;
        }
    }

    record Fuse() implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            return List.of(String.join("", tokens));
        }
    }

    /** Removes up to {@code start} leading and {@code stop} trailing {@code content} characters of each token. */
    record Strip(int content, int start, int stop) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String t : tokens) {
                int[] cps = t.codePoints().toArray();
                int from = 0;
                while (from < Math.min(start, cps.length) && cps[from] == content) {
                    from++;
                }
                int to = cps.length;
                for (int i = 0; i < stop && to > from && cps[to - 1] == content; i++) {
                    to--;
                }
                out.add(new String(cps, from, to - from));
            }
            return out;
        }
    }

    /** Word-level BPE: the end-of-word suffix becomes a space (none after the last token). */
    record BpeSuffix(String suffix) implements Decoder {
        @Override
        public List<String> decodeChain(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                out.add(tokens.get(i).replace(suffix, i == tokens.size() - 1 ? "" : " "));
            }
            return out;
        }
    }

    static Decoder parse(JsonField json) {
        return switch (json.type()) {
            case "Sequence" -> new Sequence(json.list("decoders", Decoder::parse));
            case "ByteLevel" -> new ByteLevel();
            case "Metaspace" -> new Metaspace(json.get("replacement").text("\u2581").codePointAt(0),
                    !PreTokenizer.prependScheme(json).equals("never"));
            case "Replace" -> new Replace(StringOrRegex.parse(json.get("pattern")), json.get("content").text());
            case "ByteFallback" -> new ByteFallback();
            case "Fuse" -> new Fuse();
            case "Strip" -> new Strip(json.get("content").text().codePointAt(0), json.get("start").intValue(0),
                    json.get("stop").intValue(0));
            case "BPEDecoder" -> new BpeSuffix(json.get("suffix").text("</w>"));
            default -> throw json.unsupported("decoder",
                    "Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder");
        };
    }
}
