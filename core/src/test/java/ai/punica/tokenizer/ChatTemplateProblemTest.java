package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A chat template that does not compile costs the model its chat, never its tokenizer (issue 19, item 1). */
class ChatTemplateProblemTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private Tokenizer withTemplate(String template) throws IOException {
        Files.copy(Fixtures.model().resolve("tokenizer.json"), dir.resolve("tokenizer.json"));
        ObjectNode config = (ObjectNode) JSON.readTree(Fixtures.model().resolve("tokenizer_config.json").toFile());
        config.put("chat_template", template);
        Files.writeString(dir.resolve("tokenizer_config.json"), JSON.writeValueAsString(config));
        return Tokenizer.load(dir);
    }

    @Test
    void templateThatDoesNotCompileLeavesTheTokenizerWorkingAndSaysWhy() throws IOException {
        Tokenizer tokenizer = withTemplate("{{ bos_token }}\n{% for m in messages %}{{ m.content }}{% endfro %}");
        assertThat(tokenizer.chatTemplate()).isEmpty();
        assertThat(tokenizer.chatTemplateProblem()).hasValueSatisfying(problem -> assertThat(problem)
                .startsWith("the chat template of tokenizer_config.json cannot be compiled: template syntax error")
                .contains("line 2"));
        assertThat(tokenizer.encode("red apple", true)).isEqualTo(Tokenizer.load(Fixtures.model()).encode("red apple", true));
    }

    @Test
    void filterBlockOfAFineTuneTemplateCompilesNow() throws IOException {
        Tokenizer tokenizer = withTemplate("{% for m in messages %}{% filter trim %}  {{ m.content }}  {% endfilter %}"
                + "{% endfor %}");
        assertThat(tokenizer.chatTemplateProblem()).isEmpty();
        assertThat(tokenizer.chatTemplate().orElseThrow().render(List.of(Map.of("role", "user", "content", " hi ")),
                false, Map.of())).isEqualTo("hi");
    }
}
