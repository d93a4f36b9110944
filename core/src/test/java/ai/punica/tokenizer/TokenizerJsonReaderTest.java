package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Tokenizer.load streams tokenizer.json; the result must not depend on the order of its fields. */
class TokenizerJsonReaderTest {
    @TempDir
    Path dir;

    private Tokenizer load(String model) throws IOException {
        Files.writeString(dir.resolve("tokenizer.json"), "{\"version\": \"1.0\", \"added_tokens\": [], "
                + "\"normalizer\": null, \"pre_tokenizer\": null, \"post_processor\": null, \"decoder\": null, "
                + "\"model\": " + model + "}");
        return Tokenizer.load(dir);
    }

    @Test
    void vocabularyAndMergesGiveTheSameTokenizerInEitherOrder() throws IOException {
        String vocab = "\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4}";
        String merges = "\"merges\": [\"a b\", [\"ab\", \"c\"]]";
        Tokenizer vocabFirst = load("{\"type\": \"BPE\", " + vocab + ", " + merges + "}");
        Tokenizer mergesFirst = load("{\"type\": \"BPE\", " + merges + ", " + vocab + "}");
        assertThat(vocabFirst.encode("abcab", false)).containsExactly(4, 3);
        assertThat(mergesFirst.encode("abcab", false)).containsExactly(4, 3);
        assertThat(vocabFirst.vocabSize()).isEqualTo(5);
    }

    @Test
    void mergeOfAnUnknownTokenNamesTheFileAndTheMerge() {
        assertThatThrownBy(() -> load("{\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"ab\": 1}, \"merges\": [\"a x\"]}"))
                .isInstanceOf(TokenizerException.class)
                .hasMessageContaining("tokenizer.json: model.merges[0]: merge uses \"x\", which is not in model.vocab");
    }
}
