package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A model whose chat template cannot be used still serves (issue 19): a template that does not
 * compile, or one that recurses forever, costs each chat request a 400 that names the template
 * error, and nothing else: the engine builds, the server starts, completions work, the next request
 * is served.
 */
class ModelChatTemplateTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String CHAT = "{\"model\":\"fixture-base\",\"max_tokens\":4,"
            + "\"messages\":[{\"role\":\"user\",\"content\":\"red apple\"}]}";
    private static final String COMPLETION = "{\"model\":\"fixture-base\",\"max_tokens\":8,\"temperature\":0,"
            + "\"prompt\":\"input: red apple stone\\noutput:\"}";

    @TempDir
    Path dir;

    /** The fixture model with its tokenizer_config.json's chat_template replaced. */
    private Path modelWithTemplate(String template) throws IOException {
        for (String file : List.of("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")) {
            Files.createSymbolicLink(dir.resolve(file), Fixtures.model().resolve(file).toAbsolutePath());
        }
        ObjectNode config = (ObjectNode) JSON.readTree(Fixtures.model().resolve("tokenizer_config.json").toFile());
        config.put("chat_template", template);
        Files.writeString(dir.resolve("tokenizer_config.json"), JSON.writeValueAsString(config));
        return dir;
    }

    private static void assertChatRefusedAndCompletionsServed(Path model, String message) throws Exception {
        try (EngineBuilder.Runtime runtime = new EngineBuilder().model(model).modelName("fixture-base").backend("cpu")
                .config(TestServers.config(64)).build()) {
            PunicaServer server = TestServers.start(runtime, b -> { });
            try {
                Http http = new Http(server, null);
                for (int i = 0; i < 2; i++) {
                    Http.Response chat = http.post("/v1/chat/completions", CHAT);
                    assertThat(chat.status()).as(chat.body()).isEqualTo(400);
                    JsonNode error = JSON.readTree(chat.bytes()).get("error");
                    assertThat(error.get("message").asText()).contains(message);
                    assertThat(error.get("message").asText()).doesNotContain("Exception").doesNotContain("\tat ");
                    Http.Response completion = http.post("/v1/completions", COMPLETION);
                    assertThat(completion.status()).as(completion.body()).isEqualTo(200);
                    assertThat(JSON.readTree(completion.bytes()).at("/choices/0/text").asText()).isNotEmpty();
                }
            } finally {
                server.stop(Duration.ofSeconds(2));
            }
        }
    }

    @Test
    void templateThatDoesNotCompileDisablesChatOnlyWithItsSyntaxError() throws Exception {
        Path model = modelWithTemplate("{% for message in messages %}\n{{ message.content }}\n{% endfro %}");
        assertChatRefusedAndCompletionsServed(model, "cannot serve chat requests: the chat template of "
                + "tokenizer_config.json cannot be compiled: template syntax error");
    }

    @Test
    void templateThatRecursesForeverIsA400NamingTheLimit() throws Exception {
        Path model = modelWithTemplate("{% macro turn(n) %}{{ turn(n + 1) }}{% endmacro %}{{ turn(0) }}");
        assertChatRefusedAndCompletionsServed(model, "template recursion deeper than 200 levels");
    }
}
