package ai.punica.bench.serve;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Synthetic prompts: random English words, so no two prompts share a prefix (a server's prefix cache cannot
 * shorten their prefill). With a {@link TokenCounter}, a prompt has exactly the number of tokens asked for,
 * special tokens included; without one, it has about that many words and its length is not known in advance.
 *
 * <p>Exact lengths: with the project's tokenizer, the words are encoded, the first n ids decoded, and the text
 * re-encoded (a cut at a token boundary usually re-encodes to the same ids; n is corrected if not). Otherwise,
 * or if that does not converge, a binary search over the text's length in characters for a prefix of
 * exactly the count (about log₂(characters) counts, each a /tokenize call when the server counts).
 */
public final class PromptMaker {
    private static final String[] WORDS = ("time person year way day thing man world life hand part child eye "
            + "woman place work week case point government company number group problem fact be have do say get "
            + "make go know take see come think look want give use find tell ask seem feel try leave call good new "
            + "first last long great little own other old right big high different small large next early young "
            + "important few public bad same able to of in for on with at by from up about into over after red "
            + "apple stone river light green music table window garden paper water story market winter summer "
            + "cloud bridge engine signal model token letter number orange yellow silver quiet rapid simple").split(" ");
    private static final int ATTEMPTS = 6;

    private final TokenCounter counter;
    private final boolean byIds;

    /** {@code counter} null: prompts of about the asked number of words, not counted. */
    public PromptMaker(TokenCounter counter) {
        this(counter, true);
    }

    /** {@code byIds} false: only the binary search over counts, even with a local tokenizer. */
    PromptMaker(TokenCounter counter, boolean byIds) {
        this.counter = counter;
        this.byIds = byIds;
    }

    public boolean exact() {
        return counter != null;
    }

    /**
     * A prompt of {@code tokens} tokens (special tokens included) and its count; when no prompt of exactly that
     * count was found, the closest one found and its count.
     */
    public PromptSample make(int tokens, int maxTokens, SplittableRandom random) {
        if (counter == null) {
            return new PromptSample(words(Math.max(1, tokens), random), -1, maxTokens);
        }
        String best = null;
        int bestCount = -1;
        for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
            String text = words(Math.max(4, tokens + tokens / 2 + 4), random);
            while (counter.count(text) < tokens) {
                text = text + " " + words(Math.max(4, tokens), random);
            }
            String candidate = byIds && counter instanceof TokenCounter.Local local ? byIds(local, text, tokens) : null;
            if (candidate == null) {
                candidate = byBinarySearch(text, tokens);
            }
            int count = counter.count(candidate);
            if (count == tokens) {
                return new PromptSample(candidate, count, maxTokens);
            }
            if (best == null || Math.abs(count - tokens) < Math.abs(bestCount - tokens)) {
                best = candidate;
                bestCount = count;
            }
        }
        return new PromptSample(best, bestCount, maxTokens);
    }

    private static String byIds(TokenCounter.Local local, String text, int tokens) {
        int[] ids = local.tokenizer().encode(text, false);
        int specials = local.count("");
        int n = Math.min(ids.length, tokens - specials);
        for (int attempt = 0; attempt < 4 && n > 0 && n <= ids.length; attempt++) {
            int[] prefix = new int[n];
            System.arraycopy(ids, 0, prefix, 0, n);
            String candidate = local.tokenizer().decode(prefix, true);
            int count = local.count(candidate);
            if (count == tokens) {
                return candidate;
            }
            n += tokens - count;
        }
        return null;
    }

    /** The shortest prefix of {@code text} whose count reaches {@code tokens}, or one shorter if it overshoots. */
    private String byBinarySearch(String text, int tokens) {
        int lo = 1;
        int hi = text.length();
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (counter.count(text.substring(0, mid)) >= tokens) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        String candidate = text.substring(0, lo);
        if (counter.count(candidate) != tokens && lo > 1 && counter.count(text.substring(0, lo - 1)) == tokens) {
            return text.substring(0, lo - 1);
        }
        return candidate;
    }

    private static String words(int count, SplittableRandom random) {
        List<String> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            out.add(WORDS[random.nextInt(WORDS.length)]);
        }
        return String.join(" ", out);
    }
}
