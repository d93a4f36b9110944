package ai.punica.server;

import ai.punica.tokenizer.Tokenizer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The text of single tokens, as log-probability entries show them (OpenAI's {@code token} and
 * {@code bytes}). Special tokens show as themselves ({@code </s>}); a token that is only part of a
 * UTF-8 character decodes to U+FFFD, as in vLLM.
 * Cached: the same few thousand tokens come up again and again.
 */
final class TokenText {
    private final Tokenizer tokenizer;
    private final ConcurrentHashMap<Integer, String> cache = new ConcurrentHashMap<>();

    TokenText(Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    String of(int token) {
        return cache.computeIfAbsent(token, t -> tokenizer.decode(new int[] {t}, false));
    }

    static int[] utf8(String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        int[] out = new int[b.length];
        for (int i = 0; i < b.length; i++) {
            out[i] = b[i] & 0xff;
        }
        return out;
    }
}
