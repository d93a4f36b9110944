package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A chat prompt is the chat template's text encoded without added special tokens, as transformers'
 * {@code apply_chat_template(tokenize=True)} and vLLM do: a template that writes {@code {{ bos_token }}} gets one
 * BOS, a template that writes none gets none, and vLLM's {@code add_special_tokens: true} adds the tokenizer's
 * on top. (Punica-J used to add BOS to every rendered prompt that did not start with it, one token more than vLLM.)
 */
class ChatSpecialTokensTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String MESSAGES = "\"messages\":[{\"role\":\"user\",\"content\":\"red apple\"}]";

    @TempDir
    Path dir;

    @Test
    void theTemplateDecidesTheSpecialTokensUnlessTheRequestAsksForMore() throws Exception {
        int bos = bosId();
        // The demo model's template starts with {{ bos_token }}.
        List<Integer> withBos = tokens(Fixtures.model(), "{" + MESSAGES + "}");
        assertThat(withBos.getFirst()).isEqualTo(bos);
        assertThat(withBos.get(1)).as("one BOS, from the template").isNotEqualTo(bos);
        List<Integer> doubled = tokens(Fixtures.model(), "{" + MESSAGES + ",\"add_special_tokens\":true}");
        assertThat(doubled.subList(0, 2)).as("add_special_tokens adds the tokenizer's BOS on top").containsExactly(bos, bos);
        assertThat(doubled.subList(1, doubled.size())).isEqualTo(withBos);

        // The same template without {{ bos_token }}: no BOS, and chat requests run exactly those tokens.
        Path model = modelWithoutBosInTemplate();
        List<Integer> without = tokens(model, "{" + MESSAGES + "}");
        assertThat(without).isEqualTo(withBos.subList(1, withBos.size()));
        assertThat(tokens(model, "{" + MESSAGES + ",\"add_special_tokens\":true}").getFirst()).isEqualTo(bos);
    }

    /** /tokenize's ids for {@code body}, checked against the prompt_tokens a chat completion of it reports. */
    private List<Integer> tokens(Path model, String body) throws Exception {
        try (EngineBuilder.Runtime runtime = new EngineBuilder().model(model).modelName("fixture-base").backend("cpu")
                .config(TestServers.config(64)).build()) {
            PunicaServer server = TestServers.start(runtime, b -> { });
            try {
                Http http = new Http(server, null);
                Http.Response t = http.post("/tokenize", body);
                assertThat(t.status()).as(t.body()).isEqualTo(200);
                List<Integer> ids = new ArrayList<>();
                JSON.readTree(t.bytes()).get("tokens").forEach(n -> ids.add(n.asInt()));
                Http.Response chat = http.post("/v1/chat/completions",
                        body.substring(0, body.length() - 1) + ",\"model\":\"fixture-base\",\"max_tokens\":2}");
                assertThat(chat.status()).as(chat.body()).isEqualTo(200);
                JsonNode usage = JSON.readTree(chat.bytes()).get("usage");
                assertThat(usage.get("prompt_tokens").asInt()).as("chat runs the tokens /tokenize shows").isEqualTo(ids.size());
                return ids;
            } finally {
                server.stop(java.time.Duration.ofSeconds(2));
            }
        }
    }

    private Path modelWithoutBosInTemplate() throws Exception {
        for (String file : List.of("config.json", "generation_config.json", "model.safetensors", "tokenizer.json")) {
            Files.createSymbolicLink(dir.resolve(file), Fixtures.model().resolve(file).toAbsolutePath());
        }
        ObjectNode config = (ObjectNode) JSON.readTree(Fixtures.model().resolve("tokenizer_config.json").toFile());
        String template = config.get("chat_template").asText();
        assertThat(template).startsWith("{{ bos_token }}");
        config.put("chat_template", template.substring("{{ bos_token }}".length()));
        Files.writeString(dir.resolve("tokenizer_config.json"), JSON.writeValueAsString(config));
        return dir;
    }

    private static int bosId() throws Exception {
        JsonNode config = JSON.readTree(Fixtures.model().resolve("config.json").toFile());
        return config.get("bos_token_id").asInt();
    }
}
