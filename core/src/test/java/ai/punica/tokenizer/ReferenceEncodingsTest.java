package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.tokenizer.ReferenceTokenizers.Corpus;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every corpus string of fixtures/tokenizer/*_encodings.json (computed by HF tokenizers 0.23.2)
 * must give exactly the same ids, tokens and decoded text here; all mismatches are listed.
 */
class ReferenceEncodingsTest {

    @ParameterizedTest
    @EnumSource(Corpus.class)
    void encodeMatchesHuggingFaceForEveryCorpusString(Corpus corpus) {
        Tokenizer tokenizer = ReferenceTokenizers.tokenizer(corpus);
        List<String> mismatches = new ArrayList<>();
        int count = 0;
        for (JsonNode entry : ReferenceTokenizers.entries(corpus)) {
            count++;
            String text = entry.get("text").asText();
            int[] ids = tokenizer.encode(text, false);
            int[] withSpecial = tokenizer.encode(text, true);
            if (!Arrays.equals(ids, ReferenceTokenizers.ints(entry.get("ids")))) {
                mismatches.add(quote(text) + ": ids " + Arrays.toString(ids) + ", expected " + entry.get("ids"));
            }
            if (!Arrays.equals(withSpecial, ReferenceTokenizers.ints(entry.get("ids_with_special")))) {
                mismatches.add(quote(text) + ": ids with special tokens " + Arrays.toString(withSpecial) + ", expected "
                        + entry.get("ids_with_special"));
            }
            List<String> tokens = Arrays.stream(withSpecial).mapToObj(tokenizer::idToToken).toList();
            List<String> expectedTokens = new ArrayList<>();
            entry.get("tokens_with_special").forEach(t -> expectedTokens.add(t.asText()));
            if (!tokens.equals(expectedTokens)) {
                mismatches.add(quote(text) + ": tokens " + tokens + ", expected " + expectedTokens);
            }
        }
        assertThat(count).as("corpus size").isGreaterThanOrEqualTo(40);
        assertThat(mismatches).as(corpus + ": " + mismatches.size() + " of " + count + " strings differ").isEmpty();
    }

    @ParameterizedTest
    @EnumSource(Corpus.class)
    void decodeMatchesHuggingFaceForEveryCorpusString(Corpus corpus) {
        Tokenizer tokenizer = ReferenceTokenizers.tokenizer(corpus);
        List<String> mismatches = new ArrayList<>();
        for (JsonNode entry : ReferenceTokenizers.entries(corpus)) {
            int[] ids = ReferenceTokenizers.ints(entry.get("ids_with_special"));
            check(mismatches, entry, "decoded", tokenizer.decode(ids, false));
            check(mismatches, entry, "decoded_skip_special", tokenizer.decode(ids, true));
        }
        assertThat(mismatches).as(corpus.toString()).isEmpty();
    }

    @ParameterizedTest
    @EnumSource(Corpus.class)
    void streamedTextEqualsReferenceDecodeForEveryCorpusString(Corpus corpus) {
        Tokenizer tokenizer = ReferenceTokenizers.tokenizer(corpus);
        List<String> mismatches = new ArrayList<>();
        for (JsonNode entry : ReferenceTokenizers.entries(corpus)) {
            int[] ids = ReferenceTokenizers.ints(entry.get("ids_with_special"));
            for (boolean skip : new boolean[] {false, true}) {
                IncrementalDecoder stream = tokenizer.newIncrementalDecoder(skip);
                StringBuilder text = new StringBuilder();
                for (int id : ids) {
                    String piece = stream.add(id);
                    if (piece.endsWith("\uFFFD")) {
                        mismatches.add(quote(entry.get("text").asText()) + ": streamed a replacement character");
                    }
                    text.append(piece);
                }
                text.append(stream.flush());
                check(mismatches, entry, skip ? "decoded_skip_special" : "decoded", text.toString());
            }
        }
        assertThat(mismatches).as(corpus.toString()).isEmpty();
    }

    private static void check(List<String> mismatches, JsonNode entry, String field, String actual) {
        String expected = entry.get(field).asText();
        if (!expected.equals(actual)) {
            mismatches.add(quote(entry.get("text").asText()) + ": " + field + " " + quote(actual) + ", expected "
                    + quote(expected));
        }
    }

    private static String quote(String s) {
        return "\"" + s.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + "\"";
    }
}
