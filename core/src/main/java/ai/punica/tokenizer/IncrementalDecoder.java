package ai.punica.tokenizer;

import java.util.Arrays;

/**
 * Turns generated token ids into streamed text, one id at a time, for one sequence (not
 * thread-safe; one per request).
 *
 * <p>Decoding a token on its own is wrong in two ways: a character may be split over several
 * byte-level or {@code <0xNN>} tokens, and SentencePiece decoders strip the leading space of the
 * first token only. So, as vLLM does, each step decodes a short window twice: the tokens since the
 * previous emission plus the new ones ({@code [prefixOffset, size)}), and the same window without
 * the unread tokens ({@code [prefixOffset, readOffset)}). Both see the same first token, so
 * the difference is exactly the new text; it is emitted only when it does not end in U+FFFD
 * (the decoders' mark for an incomplete UTF-8 sequence). The concatenation of everything returned
 * by {@link #add} and {@link #flush} equals {@code tokenizer.decode(allIds, skipSpecialTokens)}.
 *
 * <p>One more rule for SentencePiece byte fallback: HF's ByteFallback decoder turns a whole run of
 * {@code <0xNN>} tokens into U+FFFD per byte when the run is not valid UTF-8, so a byte that
 * decoded fine alone ({@code <0x0A>}) can become U+FFFD when an invalid byte follows. Text is
 * therefore held back while the last visible token is a byte token; the run is final once a
 * normal token ends it (in practice: a newline shows up one token late).
 */
public final class IncrementalDecoder {
    private final Tokenizer tokenizer;
    private final boolean skipSpecialTokens;
    private int[] ids = new int[64];
    private int size;
    /** Start of the decode window: the first token of the previous emission. */
    private int prefixOffset;
    /** End of the tokens whose text has been emitted. */
    private int readOffset;
    private final StringBuilder emitted = new StringBuilder();

    IncrementalDecoder(Tokenizer tokenizer, boolean skipSpecialTokens) {
        this.tokenizer = tokenizer;
        this.skipSpecialTokens = skipSpecialTokens;
    }

    /** Adds one generated id; returns the text that became final with it, or "" if none did. */
    public String add(int tokenId) {
        if (size == ids.length) {
            ids = Arrays.copyOf(ids, size * 2);
        }
        ids[size++] = tokenId;
        if (endsInByteRun()) {
            return "";
        }
        String prefixText = tokenizer.decode(ids, prefixOffset, readOffset, skipSpecialTokens);
        String newText = tokenizer.decode(ids, prefixOffset, size, skipSpecialTokens);
        if (newText.length() <= prefixText.length() || newText.endsWith("\uFFFD") || !newText.startsWith(prefixText)) {
            return "";
        }
        String delta = newText.substring(prefixText.length());
        prefixOffset = readOffset;
        readOffset = size;
        emitted.append(delta);
        return delta;
    }

    /**
     * Ends the sequence: returns the text not yet emitted (held-back incomplete characters become
     * U+FFFD, exactly as a full decode renders them).
     */
    public String flush() {
        String full = tokenizer.decode(ids, 0, size, skipSpecialTokens);
        String done = emitted.toString();
        String rest = full.startsWith(done) ? full.substring(done.length()) : "";
        emitted.append(rest);
        prefixOffset = size;
        readOffset = size;
        return rest;
    }

    /** True if the last token the decoder will see is a {@code <0xNN>} byte-fallback token. */
    private boolean endsInByteRun() {
        if (!tokenizer.decodesByteFallback()) {
            return false;
        }
        for (int i = size - 1; i >= readOffset; i--) {
            if (skipSpecialTokens && tokenizer.isSpecial(ids[i])) {
                continue;
            }
            String token = tokenizer.idToToken(ids[i]);
            if (token == null) {
                continue;
            }
            return Decoder.ByteFallback.byteToken(token) >= 0;
        }
        return false;
    }

    /** Number of ids added so far. */
    public int tokenCount() {
        return size;
    }
}
