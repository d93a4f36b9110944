package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpRequest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** vLLM's routes and options beyond OpenAI's API that tools rely on: tokenize, version, ping, CORS, echo, n. */
class VllmRoutesTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "sk-routes";
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> b.apiKey(KEY).allowedOrigins(List.of("https://app.example")));
        http = new Http(server, KEY);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    @Test
    void tokenizeAndDetokenizeRoundTripAsGenerationWouldRunThePrompt() throws Exception {
        String prompt = "input: red apple stone\noutput:";
        int[] expected = runtime.engine().tokenizer().encode(prompt, true);
        JsonNode t = JSON.readTree(http.post("/tokenize", "{\"model\":\"upper\",\"prompt\":"
                + JSON.writeValueAsString(prompt) + ",\"return_token_strs\":true}").bytes());
        assertThat(t.get("count").asInt()).isEqualTo(expected.length);
        assertThat(t.get("max_model_len").asInt()).isEqualTo(runtime.engine().maxModelLen());
        List<Integer> tokens = new ArrayList<>();
        t.get("tokens").forEach(n -> tokens.add(n.asInt()));
        assertThat(tokens).containsExactly(java.util.Arrays.stream(expected).boxed().toArray(Integer[]::new));
        assertThat(t.get("token_strs")).hasSize(expected.length);
        assertThat(t.get("token_strs").get(0).asText()).isEqualTo("<s>");

        JsonNode d = JSON.readTree(http.post("/detokenize", "{\"tokens\":" + t.get("tokens").toString().replace(
                "[1,", "[") + "}").bytes());
        assertThat(d.get("prompt").asText()).isEqualTo(prompt);

        JsonNode chat = JSON.readTree(http.post("/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}")
                .bytes());
        List<Integer> chatTokens = new ArrayList<>();
        chat.get("tokens").forEach(n -> chatTokens.add(n.asInt()));
        String rendered = runtime.engine().tokenizer().decode(chatTokens.stream().mapToInt(Integer::intValue).toArray(),
                false);
        assertThat(rendered).isEqualTo("<s><|user|>\nhi\n<|assistant|>\n");

        Http.Response bad = http.post("/detokenize", "{\"tokens\":[1,999999]}");
        assertThat(bad.status()).isEqualTo(400);
        assertThat(bad.body()).contains("outside the vocabulary");
        assertThat(http.post("/tokenize", "{\"model\":\"nope\",\"prompt\":\"x\"}").status()).isEqualTo(404);
    }

    @Test
    void versionAndPing() throws Exception {
        assertThat(JSON.readTree(http.get("/version").bytes()).get("version").asText()).isEqualTo(PunicaServer.VERSION);
        assertThat(http.get("/ping").status()).isEqualTo(200);
        assertThat(http.post("/ping", "").status()).isEqualTo(200);
    }

    @Test
    void corsPreflightAndRequestsFromAnAllowedOriginOnly() {
        var anonymous = new Http(server, null);
        var preflight = anonymous.sendWithHeaders(HttpRequest.newBuilder(URI.create(server.baseUrl()
                        + "/v1/chat/completions")).method("OPTIONS", HttpRequest.BodyPublishers.noBody())
                .header("Origin", "https://app.example").header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "authorization, content-type"));
        assertThat(preflight.statusCode()).isEqualTo(200);
        assertThat(preflight.headers().firstValue("access-control-allow-origin")).contains("https://app.example");
        assertThat(preflight.headers().firstValue("access-control-allow-methods").orElse("")).contains("POST");
        assertThat(preflight.headers().firstValue("access-control-allow-headers").orElse(""))
                .contains("authorization");

        var allowed = http.sendWithHeaders(http.request("/v1/models").header("Origin", "https://app.example").GET());
        assertThat(allowed.statusCode()).isEqualTo(200);
        assertThat(allowed.headers().firstValue("access-control-allow-origin")).contains("https://app.example");

        var other = http.sendWithHeaders(http.request("/v1/models").header("Origin", "https://evil.example").GET());
        assertThat(other.headers().firstValue("access-control-allow-origin")).isEmpty();
    }

    @Test
    void echoPutsThePromptBeforeTheOutputWholeAndStreamed() throws Exception {
        String body = "{\"model\":\"upper\",\"prompt\":\"input: red apple stone\\noutput:\",\"max_tokens\":32,"
                + "\"temperature\":0,\"echo\":true";
        JsonNode whole = JSON.readTree(http.post("/v1/completions", body + "}").bytes());
        assertThat(whole.at("/choices/0/text").asText()).isEqualTo("input: red apple stone\noutput: RED APPLE STONE");
        StringBuilder streamed = new StringBuilder();
        for (String data : Http.sseData(http.post("/v1/completions", body + ",\"stream\":true}").body())) {
            if (!data.equals("[DONE]")) {
                streamed.append(JSON.readTree(data).at("/choices/0/text").asText());
            }
        }
        assertThat(streamed.toString()).isEqualTo("input: red apple stone\noutput: RED APPLE STONE");
    }

    private static String text(String extra) throws Exception {
        Http.Response r = http.post("/v1/completions", "{\"model\":\"upper\",\"prompt\":\"input: red apple stone\\n"
                + "output:\",\"max_tokens\":12,\"temperature\":0" + extra + "}");
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        return JSON.readTree(r.bytes()).at("/choices/0/text").asText();
    }

    @Test
    void includeStopStrInOutputKeepsTheStopString() throws Exception {
        assertThat(text(",\"stop\":\"APPLE\"")).isEqualTo(" RED ");
        assertThat(text(",\"stop\":\"APPLE\",\"include_stop_str_in_output\":true")).isEqualTo(" RED APPLE");
    }

    @Test
    void skipSpecialTokensFalseShowsThemInTheText() throws Exception {
        // Past an ignored end of sequence, </s> is text like any other token unless special tokens are skipped.
        assertThat(text(",\"ignore_eos\":true")).startsWith(" RED APPLE STONE").doesNotContain("</s>");
        assertThat(text(",\"ignore_eos\":true,\"skip_special_tokens\":false")).startsWith(" RED APPLE STONE</s>");
    }

    @Test
    void moreThanSixteenChoicesUpToTheServerOption() throws Exception {
        JsonNode r = JSON.readTree(http.post("/v1/completions", "{\"model\":\"sort\",\"prompt\":\"input: red apple "
                + "stone\\noutput:\",\"max_tokens\":2,\"n\":20,\"seed\":3}").bytes());
        assertThat(r.get("choices")).hasSize(20);
    }
}
