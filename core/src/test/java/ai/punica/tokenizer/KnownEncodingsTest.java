package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

/** Encodings one can check by hand or against published model cards, on the committed real tokenizers. */
class KnownEncodingsTest {

    @Test
    void llama3HelloWorldIsTwoTokensAndAddsNoBosBecauseItsPostProcessorIsByteLevel() {
        Tokenizer llama3 = ReferenceTokenizers.llama3();
        assertThat(llama3.encode("Hello world", false)).containsExactly(9906, 1917);
        assertThat(llama3.encode("Hello world", true)).containsExactly(9906, 1917);
        assertThat(llama3.idToToken(1917)).isEqualTo("\u0120world");
        assertThat(llama3.bosTokenId()).hasValue(128000);
        assertThat(llama3.eosTokenId()).hasValue(128001);
        assertThat(llama3.bosToken()).isEqualTo("<|begin_of_text|>");
        assertThat(llama3.vocabSize()).isEqualTo(128256);
    }

    @Test
    void llama3SpecialTokensInTextAreSplitOutAndSkippableOnDecode() {
        Tokenizer llama3 = ReferenceTokenizers.llama3();
        int[] ids = llama3.encode("<|begin_of_text|>Hello world<|eot_id|>", false);
        assertThat(ids).containsExactly(128000, 9906, 1917, 128009);
        assertThat(llama3.tokenToId("<|eot_id|>")).isEqualTo(128009);
        assertThat(llama3.isSpecial(128009)).isTrue();
        assertThat(llama3.isSpecial(9906)).isFalse();
        assertThat(llama3.decode(ids, false)).isEqualTo("<|begin_of_text|>Hello world<|eot_id|>");
        assertThat(llama3.decode(ids, true)).isEqualTo("Hello world");
    }

    @Test
    void llama3NewlineIsTheByteLevelCharacterForByte10() {
        Tokenizer llama3 = ReferenceTokenizers.llama3();
        assertThat(llama3.encode("\n", false)).containsExactly(198);
        assertThat(llama3.idToToken(198)).isEqualTo("\u010A");
    }

    @Test
    void sentencePieceHelloWorldGetsBosAndMetaspacePrefix() {
        // The "llama2" npm tokenizer has Mistral-7B's id layout (fixtures/tokenizer/llama2/SOURCE.json);
        // Mistral's model card gives "Hello world" = [1, 22557, 1526] (Meta's Llama 2 would be [1, 15043, 3186]).
        Tokenizer sp = ReferenceTokenizers.llama2();
        assertThat(sp.encode("Hello world", true)).containsExactly(1, 22557, 1526);
        assertThat(sp.encode("Hello world", false)).containsExactly(22557, 1526);
        assertThat(Arrays.stream(sp.encode("Hello world", false)).mapToObj(sp::idToToken))
                .containsExactly("\u2581Hello", "\u2581world");
        assertThat(sp.bosTokenId()).hasValue(1);
        assertThat(sp.eosTokenId()).hasValue(2);
        assertThat(sp.vocabSize()).isEqualTo(32000);
        assertThat(sp.decode(new int[] {1, 22557, 1526, 2}, true)).isEqualTo("Hello world");
    }

    @Test
    void sentencePieceFallsBackToUtf8ByteTokensForCharactersOutsideTheVocabulary() {
        // U+20000 is F0 A0 80 80 in UTF-8; byte token <0xNN> has id NN + 3 (after <unk>, <s>, </s>).
        Tokenizer sp = ReferenceTokenizers.llama2();
        int[] ids = sp.encode("\uD840\uDC00", false);
        assertThat(ids).containsExactly(28705, 0xF0 + 3, 0xA0 + 3, 0x80 + 3, 0x80 + 3);
        assertThat(sp.idToToken(ids[1])).isEqualTo("<0xF0>");
        assertThat(sp.decode(ids, false)).isEqualTo("\uD840\uDC00");
    }

    @Test
    void sentencePieceSpecialTokensInTextAreNotGivenAPrefixSpace() {
        Tokenizer sp = ReferenceTokenizers.llama2();
        assertThat(sp.encode("<s>Hi</s>", true)).containsExactly(1, 1, 15359, 2);
    }

    @Test
    void fixtureModelTokenizerHasItsChatRolesAsSpecialTokens() {
        Tokenizer fixture = ReferenceTokenizers.fixture();
        for (String role : new String[] {"<|system|>", "<|user|>", "<|assistant|>", "<pad>"}) {
            Integer id = fixture.tokenToId(role);
            assertThat(id).as(role).isNotNull();
            assertThat(fixture.isSpecial(id)).as(role).isTrue();
        }
        assertThat(fixture.bosTokenId()).hasValue(1);
        assertThat(fixture.eosTokenId()).hasValue(2);
        assertThat(fixture.encode("hi", true)[0]).isEqualTo(1);
        assertThat(fixture.chatTemplate()).isPresent();
    }
}
