package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class IncrementalDecoderTest {

    /** Streams {@code ids} and returns every piece emitted, the flush last. */
    private static List<String> stream(Tokenizer tokenizer, int[] ids, boolean skipSpecialTokens) {
        IncrementalDecoder decoder = tokenizer.newIncrementalDecoder(skipSpecialTokens);
        List<String> pieces = new ArrayList<>();
        for (int id : ids) {
            pieces.add(decoder.add(id));
        }
        pieces.add(decoder.flush());
        return pieces;
    }

    private static void assertStreamsWholeCharacters(Tokenizer tokenizer, String text) {
        int[] ids = tokenizer.encode(text, false);
        List<String> pieces = stream(tokenizer, ids, false);
        assertThat(String.join("", pieces)).isEqualTo(text);
        for (String piece : pieces) {
            assertThat(piece).as("streamed piece of " + text).doesNotContain("\uFFFD");
            assertThat(piece.isEmpty() || !Character.isLowSurrogate(piece.charAt(0))).isTrue();
            assertThat(piece.isEmpty() || !Character.isHighSurrogate(piece.charAt(piece.length() - 1))).isTrue();
        }
    }

    @Test
    void byteLevelCharactersSplitOverSeveralTokensAreEmittedOnlyWhenComplete() {
        Tokenizer llama3 = ReferenceTokenizers.llama3();
        String text = "emoji 🎉👨‍👩‍👧 CJK 你好世界 accents e\u0301 ñ Ω 𠀀";
        int[] ids = llama3.encode(text, false);
        // Precondition: some token is only part of a UTF-8 character.
        boolean someTokenIsPartial = false;
        for (int id : ids) {
            someTokenIsPartial |= llama3.decode(new int[] {id}, false).contains("\uFFFD");
        }
        assertThat(someTokenIsPartial).isTrue();
        assertStreamsWholeCharacters(llama3, text);
    }

    @Test
    void byteFallbackTokensAreBufferedUntilTheCharacterIsComplete() {
        Tokenizer sp = ReferenceTokenizers.llama2();
        int[] ids = sp.encode("a \uD840\uDC00 b", false);
        assertThat(sp.idToToken(ids[2])).isEqualTo("<0xF0>");
        List<String> pieces = stream(sp, ids, false);
        assertThat(String.join("", pieces)).isEqualTo("a \uD840\uDC00 b");
        assertThat(pieces).noneMatch(p -> p.contains("\uFFFD"));
        assertStreamsWholeCharacters(sp, "😀 naïve 日本語 \uD840\uDC00\uD840\uDC01");
    }

    @Test
    void sentencePieceLeadingSpaceIsDroppedForTheFirstTokenOnly() {
        Tokenizer sp = ReferenceTokenizers.llama2();
        List<String> pieces = stream(sp, new int[] {22557, 1526, 22557}, false);
        assertThat(pieces).containsExactly("Hello", " world", " Hello", "");
    }

    @Test
    void skippedSpecialTokensEmitNothingAndKeepTheSpaceOfTheNextWord() {
        Tokenizer sp = ReferenceTokenizers.llama2();
        int[] ids = {1, 22557, 2, 1526};
        assertThat(stream(sp, ids, true)).containsExactly("", "Hello", "", " world", "");
        assertThat(String.join("", stream(sp, ids, false))).isEqualTo(sp.decode(ids, false));
    }

    @Test
    void flushReleasesAnIncompleteCharacterAsTheReplacementCharacter() {
        Tokenizer llama3 = ReferenceTokenizers.llama3();
        // "ok" then the first two bytes of 😀 (F0 9F), as the byte-level characters "ð" and "Ł".
        int[] truncated = {llama3.tokenToId("ok"), llama3.tokenToId("\u00F0"), llama3.tokenToId("\u0141")};
        List<String> pieces = stream(llama3, truncated, false);
        assertThat(String.join("", pieces)).isEqualTo(llama3.decode(truncated, false)).endsWith("\uFFFD");
        assertThat(pieces.getLast()).contains("\uFFFD");
    }

    @Test
    void streamedTextAlwaysEqualsTheFullDecodeOfRandomIds() {
        SplittableRandom random = new SplittableRandom(20240611);
        for (Tokenizer tokenizer : List.of(ReferenceTokenizers.llama2(), ReferenceTokenizers.llama3(),
                ReferenceTokenizers.fixture())) {
            for (int sequence = 0; sequence < 300; sequence++) {
                int[] ids = new int[1 + random.nextInt(12)];
                for (int i = 0; i < ids.length; i++) {
                    // Low ids are specials and byte tokens, the hard cases; the rest anywhere in the vocabulary.
                    ids[i] = random.nextInt(3) == 0 ? random.nextInt(300) : random.nextInt(tokenizer.vocabSize());
                }
                for (boolean skip : new boolean[] {false, true}) {
                    assertThat(String.join("", stream(tokenizer, ids, skip)))
                            .as("ids %s skip %s", java.util.Arrays.toString(ids), skip)
                            .isEqualTo(tokenizer.decode(ids, skip));
                }
            }
        }
    }
}
