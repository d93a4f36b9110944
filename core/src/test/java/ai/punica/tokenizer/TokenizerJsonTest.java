package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.json.JsonField;
import ai.punica.tokenizer.PreTokenizer.Behavior;
import ai.punica.tokenizer.PreTokenizer.Piece;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Each tokenizer.json component on small hand-made files, with results worked out by hand. */
class TokenizerJsonTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** A tokenizer.json over single characters {@code chars} plus {@code extra} tokens, with the given merges. */
    private static ObjectNode tokenizerJson(String chars, List<String> extra, List<String> merges) {
        ObjectNode root = JSON.createObjectNode();
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        ObjectNode vocab = model.putObject("vocab");
        int id = 0;
        for (int cp : chars.codePoints().toArray()) {
            vocab.put(new String(Character.toChars(cp)), id++);
        }
        for (String token : extra) {
            vocab.put(token, id++);
        }
        ArrayNode m = model.putArray("merges");
        merges.forEach(m::add);
        return root;
    }

    private static Tokenizer build(ObjectNode json) {
        return Tokenizer.fromJson(json.toString(), null);
    }

    private static List<String> tokens(Tokenizer t, String text) {
        return Arrays.stream(t.encode(text, false)).mapToObj(t::idToToken).toList();
    }

    @Test
    void mergesApplyLowestRankFirst() {
        Tokenizer abFirst = build(tokenizerJson("abc", List.of("ab", "bc"), List.of("a b", "b c")));
        Tokenizer bcFirst = build(tokenizerJson("abc", List.of("ab", "bc"), List.of("b c", "a b")));
        assertThat(tokens(abFirst, "abc")).containsExactly("ab", "c");
        assertThat(tokens(bcFirst, "abc")).containsExactly("a", "bc");
    }

    @Test
    void equalRankPairsMergeLeftmostFirst() {
        Tokenizer t = build(tokenizerJson("a", List.of("aa"), List.of("a a")));
        assertThat(tokens(t, "aaaaa")).containsExactly("aa", "aa", "a");
    }

    @Test
    void mergesGivenAsPairsEqualMergesGivenAsStrings() {
        ObjectNode json = tokenizerJson("hel o", List.of("he", "ll", "hell", "hello"), List.of());
        ArrayNode pairs = ((ObjectNode) json.get("model")).putArray("merges");
        pairs.addArray().add("h").add("e");
        pairs.addArray().add("l").add("l");
        pairs.addArray().add("he").add("ll");
        pairs.addArray().add("hell").add("o");
        Tokenizer fromPairs = build(json);
        Tokenizer fromStrings = build(tokenizerJson("hel o", List.of("he", "ll", "hell", "hello"),
                List.of("h e", "l l", "he ll", "hell o")));
        assertThat(tokens(fromPairs, "hello")).containsExactly("hello");
        assertThat(fromPairs.encode("hello hell", false)).containsExactly(fromStrings.encode("hello hell", false));
    }

    @Test
    void ignoreMergesTakesAWordThatIsInTheVocabularyWhole() {
        ObjectNode json = tokenizerJson("abc", List.of("abc"), List.of());
        assertThat(tokens(build(json), "abc")).containsExactly("a", "b", "c");
        ((ObjectNode) json.get("model")).put("ignore_merges", true);
        assertThat(tokens(build(json), "abc")).containsExactly("abc");
    }

    @Test
    void unknownCharactersFuseIntoOneUnkWhenFuseUnkIsSet() {
        ObjectNode json = tokenizerJson("ab", List.of("<unk>"), List.of());
        ((ObjectNode) json.get("model")).put("unk_token", "<unk>");
        assertThat(tokens(build(json), "axyb")).containsExactly("a", "<unk>", "<unk>", "b");
        ((ObjectNode) json.get("model")).put("fuse_unk", true);
        assertThat(tokens(build(json), "axyb")).containsExactly("a", "<unk>", "b");
    }

    @Test
    void byteFallbackSpellsMissingCharactersAsUtf8ByteTokens() {
        ObjectNode json = tokenizerJson("a", List.of("<unk>", "<0xC3>", "<0xA9>"), List.of());
        ((ObjectNode) json.get("model")).put("unk_token", "<unk>").put("byte_fallback", true);
        // é = C3 A9 has byte tokens; ü = C3 BC lacks <0xBC>, so it becomes <unk>.
        assertThat(tokens(build(json), "aéü")).containsExactly("a", "<0xC3>", "<0xA9>", "<unk>");
    }

    @Test
    void addedTokensAreSplitOutBeforeNormalizationUnlessMarkedNormalized() {
        ObjectNode json = tokenizerJson("abcdefghijklmnopqrstuvwxyz ", List.of(), List.of());
        json.putObject("normalizer").put("type", "Lowercase");
        ArrayNode added = json.putArray("added_tokens");
        added.addObject().put("id", 100).put("content", "<X>").put("special", true).put("normalized", false);
        added.addObject().put("id", 101).put("content", "Word").put("special", false).put("normalized", true);
        ((ObjectNode) json.get("model").get("vocab")).put("<X>", 100);
        Tokenizer t = build(json);
        // "<X>" would be lowercased to "<x>" if normalized first; "WORD" only matches "Word" after lowercasing both.
        assertThat(t.encode("a<X>WORD", false)).containsExactly(0, 100, 101);
        assertThat(t.isSpecial(100)).isTrue();
        assertThat(t.isSpecial(101)).isFalse();
        assertThat(t.vocabSize()).isEqualTo(27 + 2);
    }

    @Test
    void addedTokenStripAndSingleWordOptionsFollowHuggingFace() {
        ObjectNode json = tokenizerJson("ab ", List.of(), List.of());
        ArrayNode added = json.putArray("added_tokens");
        added.addObject().put("id", 10).put("content", "<L>").put("lstrip", true).put("special", true);
        added.addObject().put("id", 11).put("content", "<R>").put("rstrip", true).put("special", true);
        added.addObject().put("id", 12).put("content", "ab").put("single_word", true).put("special", false)
                .put("normalized", false);
        Tokenizer t = build(json);
        assertThat(t.encode("a  <L>b", false)).containsExactly(0, 10, 1);
        assertThat(t.encode("a<R>  b", false)).containsExactly(0, 11, 1);
        // "ab" alone is the added token, inside "aab" it is not a word of its own.
        assertThat(t.encode("ab aab", false)).containsExactly(12, 2, 0, 0, 1);
    }

    @Test
    void splitBehaviorsKeepOrMergeTheDelimiterLikeHuggingFace() {
        assertThat(split("a-b--c", Behavior.ISOLATED, false)).containsExactly("a", "-", "b", "-", "-", "c");
        assertThat(split("a-b--c", Behavior.REMOVED, false)).containsExactly("a", "b", "c");
        assertThat(split("a-b--c", Behavior.MERGED_WITH_PREVIOUS, false)).containsExactly("a-", "b-", "-", "c");
        assertThat(split("a-b--c", Behavior.MERGED_WITH_NEXT, false)).containsExactly("a", "-b", "-", "-c");
        assertThat(split("a-b--c", Behavior.CONTIGUOUS, false)).containsExactly("a", "-", "b", "--", "c");
        assertThat(split("a-b--c", Behavior.REMOVED, true)).containsExactly("-", "-", "-");
    }

    private static List<String> split(String text, Behavior behavior, boolean invert) {
        List<Piece> out = new ArrayList<>();
        new PreTokenizer.Split(Pattern.compile("-"), behavior, invert).split(new Piece(text, true), out);
        return out.stream().map(Piece::text).toList();
    }

    @Test
    void gpt2SplitRegexTreatsUnicodeSpacesAsWhitespaceLikeOniguruma() {
        // Java's \s is ASCII-only by default; Oniguruma's (and so HF's) also matches U+00A0 and U+3000.
        Pattern llama3 = OnigRegex.compile("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", null);
        List<Piece> out = new ArrayList<>();
        new PreTokenizer.Split(llama3, Behavior.ISOLATED, false).split(new Piece("a\u00a0\u00a0b I'LL 12345", true), out);
        assertThat(out.stream().map(Piece::text))
                .containsExactly("a", "\u00a0", "\u00a0b", " I", "'LL", " ", "123", "45");
    }

    @Test
    void metaspacePrependSchemeFirstOnlyPrefixesTheStartOfTheInput() {
        List<Piece> first = new PreTokenizer.Metaspace("\u2581", "first", true)
                .apply(List.of(new Piece("a b", true), new Piece("c", false)));
        List<Piece> always = new PreTokenizer.Metaspace("\u2581", "always", true)
                .apply(List.of(new Piece("a b", true), new Piece("c", false)));
        assertThat(first.stream().map(Piece::text)).containsExactly("\u2581a", "\u2581b", "c");
        assertThat(always.stream().map(Piece::text)).containsExactly("\u2581a", "\u2581b", "\u2581c");
    }

    @Test
    void normalizersRunInSequence() {
        ObjectNode json = JSON.createObjectNode();
        ArrayNode seq = json.put("type", "Sequence").putArray("normalizers");
        seq.addObject().put("type", "NFKC");
        seq.addObject().put("type", "Lowercase");
        seq.addObject().put("type", "Strip").put("strip_left", true).put("strip_right", false);
        seq.addObject().put("type", "Replace").put("content", "_").putObject("pattern").put("Regex", "\\s+");
        seq.addObject().put("type", "Prepend").put("prepend", "\u2581");
        Normalizer n = Normalizer.parse(JsonField.root("tokenizer.json", JSON.createObjectNode().set("normalizer", json), TokenizerException::new).get("normalizer"));
        // NFKC turns the ligature "ﬁ" into "fi" and full-width "Ａ" into "A".
        assertThat(n.normalize("  \uFB01ne  \uFF21 ")).isEqualTo("\u2581fine_a_");
        assertThat(n.normalize("")).isEmpty();
    }

    @Test
    void sentencePieceDecoderChainRestoresSpacesBytesAndStripsTheFirstSpace() {
        Decoder d = new Decoder.Sequence(List.of(new Decoder.Replace(Pattern.compile("\u2581"), " "),
                new Decoder.ByteFallback(), new Decoder.Fuse(), new Decoder.Strip(' ', 1, 0)));
        assertThat(d.decode(List.of("\u2581Hi", "\u2581", "<0xE2>", "<0x82>", "<0xAC>", "!"))).isEqualTo("Hi \u20AC!");
        // An invalid byte run becomes one U+FFFD per byte, as HF does.
        assertThat(d.decode(List.of("a", "<0xE2>", "<0x82>", "b"))).isEqualTo("a\uFFFD\uFFFDb");
    }

    @Test
    void metaspaceDecoderDropsTheReplacementOnlyInTheFirstToken() {
        Decoder d = new Decoder.Metaspace('\u2581', true);
        assertThat(d.decode(List.of("\u2581Hello", "\u2581world"))).isEqualTo("Hello world");
        assertThat(new Decoder.Metaspace('\u2581', false).decode(List.of("\u2581Hello"))).isEqualTo(" Hello");
    }

    @Test
    void templatePostProcessorAddsBosOnlyWhenAskedTo() {
        ObjectNode json = tokenizerJson("ab", List.of("<s>", "</s>"), List.of());
        ObjectNode post = json.putObject("post_processor").put("type", "TemplateProcessing");
        post.putArray("single").addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 0);
        ((ArrayNode) post.get("single")).addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ((ArrayNode) post.get("single")).addObject().putObject("SpecialToken").put("id", "</s>").put("type_id", 0);
        ObjectNode specials = post.putObject("special_tokens");
        specials.putObject("<s>").put("id", "<s>").putArray("ids").add(2);
        specials.putObject("</s>").put("id", "</s>").putArray("ids").add(3);
        Tokenizer t = build(json);
        assertThat(t.encode("ab", true)).containsExactly(2, 0, 1, 3);
        assertThat(t.encode("ab", false)).containsExactly(0, 1);
    }

    @Test
    void configGivesBosEosAndTheDefaultOfSeveralNamedChatTemplates() {
        String config = """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                 "chat_template": [{"name": "tool_use", "template": "tools"},
                                   {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}"}]}""";
        Tokenizer t = Tokenizer.fromJson(tokenizerJson("ab", List.of("<s>", "</s>"), List.of()).toString(), config);
        assertThat(t.bosTokenId()).hasValue(2);
        assertThat(t.eosTokenId()).hasValue(3);
        assertThat(t.chatTemplate().orElseThrow().render(
                List.of(java.util.Map.of("role", "user", "content", "hi")), false, java.util.Map.of())).isEqualTo("<s>hi");
        assertThat(Tokenizer.fromJson(tokenizerJson("ab", List.of(), List.of()).toString(), null).bosTokenId()).isEmpty();
    }

    @Test
    void mergeWithATokenMissingFromTheVocabularyNamesFileAndField() {
        String json = tokenizerJson("ab", List.of("ab"), List.of("a b", "a z")).toString();
        assertThatThrownBy(() -> Tokenizer.fromJson(json, null))
                .isInstanceOf(TokenizerException.class)
                .hasMessageContaining("tokenizer.json")
                .hasMessageContaining("model.merges[1]")
                .hasMessageContaining("\"z\"");
    }

    @Test
    void unsupportedComponentTypeNamesTheFieldAndTheSupportedTypes() {
        ObjectNode json = tokenizerJson("ab", List.of(), List.of());
        json.putObject("normalizer").put("type", "Precompiled");
        assertThatThrownBy(() -> build(json))
                .isInstanceOf(TokenizerException.class)
                .hasMessageContaining("normalizer.type")
                .hasMessageContaining("Precompiled")
                .hasMessageContaining("NFKC");
        ObjectNode wordPiece = tokenizerJson("ab", List.of(), List.of());
        ((ObjectNode) wordPiece.get("model")).put("type", "WordPiece");
        assertThatThrownBy(() -> build(wordPiece)).hasMessageContaining("model.type").hasMessageContaining("WordPiece");
    }

    @Test
    void malformedJsonAndMissingFilesAreReportedWithTheirNames(@TempDir Path dir) throws Exception {
        assertThatThrownBy(() -> Tokenizer.fromJson("{\"model\": ", null))
                .isInstanceOf(TokenizerException.class).hasMessageContaining("tokenizer.json: not valid JSON");
        assertThatThrownBy(() -> Tokenizer.load(dir))
                .isInstanceOf(TokenizerException.class).hasMessageContaining(dir.resolve("tokenizer.json").toString());
        Files.writeString(dir.resolve("tokenizer.json"), tokenizerJson("ab", List.of(), List.of()).toString());
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": 7}");
        assertThatThrownBy(() -> Tokenizer.load(dir))
                .isInstanceOf(TokenizerException.class)
                .hasMessageContaining("tokenizer_config.json")
                .hasMessageContaining("chat_template");
    }
}
