package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GenerationConfigTest {

    @TempDir
    Path dir;

    @Test
    void readsLlama31GenerationConfig() throws IOException {
        Files.writeString(dir.resolve(GenerationConfig.FILE), """
                {"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
                 "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"}
                """);
        GenerationConfig g = GenerationConfig.load(dir);
        assertThat(g.bosTokenId()).isEqualTo(128000);
        assertThat(g.eosTokenIds()).containsExactly(128001, 128008, 128009);
        assertThat(g.padTokenId()).isEqualTo(-1);
        assertThat(g.temperature()).isEqualTo(0.6f);
        assertThat(g.topP()).isEqualTo(0.9f);
        assertThat(g.topK()).isNull();
    }

    @Test
    void missingFileMeansNothingIsKnown() {
        GenerationConfig g = GenerationConfig.load(dir);
        assertThat(g.bosTokenId()).isEqualTo(-1);
        assertThat(g.eosTokenIds()).isEmpty();
        assertThat(g.temperature()).isNull();
    }

    @Test
    void outOfRangeSamplingValuesAreRejected() {
        assertThatThrownBy(() -> GenerationConfig.parse("{\"top_p\": 1.5}", "generation_config.json"))
                .isInstanceOf(ModelFormatException.class)
                .hasMessage("generation_config.json: field 'top_p' is 1.5; expected a probability in (0, 1]");
        assertThatThrownBy(() -> GenerationConfig.parse("{\"eos_token_id\": \"</s>\"}", "generation_config.json"))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("field 'eos_token_id' is \"</s>\"; expected an integer");
    }
}
