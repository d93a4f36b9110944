package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.JsonValue;
import com.openai.errors.BadRequestException;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import java.time.Duration;
import java.util.Iterator;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code logit_bias}, {@code min_tokens} and {@code prompt_logprobs} through the server: with the official
 * OpenAI Java SDK (logit_bias is OpenAI's, the other two go as extra body fields, as vLLM's clients send
 * them) and as raw HTTP for the exact JSON of vLLM's {@code prompt_logprobs}.
 */
class SamplingOptionsServerTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;
    private static OpenAIClient client;

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> { });
        http = new Http(server, null);
        // Retries: a keep-alive connection the server closed while idle (a test ran raw HTTP meanwhile) is retried.
        client = OpenAIOkHttpClient.builder().baseUrl(server.baseUrl() + "/v1").apiKey("unused").maxRetries(2)
                .timeout(Duration.ofSeconds(60)).build();
    }

    @AfterAll
    static void stop() {
        client.close();
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static CompletionCreateParams.Builder greedy(String prompt, int maxTokens) {
        return CompletionCreateParams.builder().model("sort").prompt(prompt).maxTokens(maxTokens).temperature(0.0);
    }

    private static int[] tokens(String text) {
        return runtime.tokenizer().encode(text, false);
    }

    @Test
    void logitBiasThroughTheSdkSteersAndBansTokens() {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        Completion plain = client.completions().create(greedy(c.prompt(), 8).build());
        String text = plain.choices().getFirst().text();
        assertThat(text.trim()).isEqualTo(c.expected());
        int first = tokens(text)[0];
        Completion banned = client.completions().create(greedy(c.prompt(), 8).logitBias(
                CompletionCreateParams.LogitBias.builder().putAdditionalProperty(Integer.toString(first),
                        JsonValue.from(-100)).build()).build());
        assertThat(banned.choices().getFirst().text()).isNotEqualTo(text);
        int favoured = tokens(" zebra")[0];
        Completion steered = client.completions().create(greedy(c.prompt(), 3).logitBias(
                CompletionCreateParams.LogitBias.builder().putAdditionalProperty(Integer.toString(favoured),
                        JsonValue.from(100)).build()).build());
        String one = runtime.tokenizer().decode(new int[] {favoured}, true);
        assertThat(steered.choices().getFirst().text()).isEqualTo(one.repeat(3));
    }

    @Test
    void minTokensThroughTheSdkGeneratesPastTheStop() {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        Completion plain = client.completions().create(greedy(c.prompt(), 32).build());
        long natural = plain.usage().orElseThrow().completionTokens();
        Completion longer = client.completions().create(greedy(c.prompt(), 32)
                .putAdditionalBodyProperty("min_tokens", JsonValue.from(natural + 4)).build());
        assertThat(longer.usage().orElseThrow().completionTokens()).isGreaterThanOrEqualTo(natural + 4);
        assertThat(longer.choices().getFirst().text()).startsWith(plain.choices().getFirst().text());
    }

    @Test
    void promptLogprobsHaveVllmsShape() throws Exception {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        Http.Response r = http.post("/v1/completions", """
                {"model":"sort","prompt":%s,"max_tokens":4,"temperature":0,"prompt_logprobs":2}"""
                .formatted(JSON.writeValueAsString(c.prompt())));
        assertThat(r.status()).isEqualTo(200);
        JsonNode body = JSON.readTree(r.bytes());
        JsonNode choice = body.at("/choices/0");
        assertThat(choice.fieldNames()).toIterable()
                .containsExactly("index", "text", "logprobs", "finish_reason", "prompt_logprobs");
        JsonNode promptLogprobs = choice.get("prompt_logprobs");
        int[] prompt = runtime.tokenizer().encode(c.prompt(), true);
        assertThat(promptLogprobs).hasSize(prompt.length);
        assertThat(promptLogprobs.get(0).isNull()).isTrue();
        for (int p = 1; p < prompt.length; p++) {
            JsonNode position = promptLogprobs.get(p);
            Iterator<String> ids = position.fieldNames();
            assertThat(ids.next()).as("the prompt token comes first").isEqualTo(Integer.toString(prompt[p]));
            assertThat(position.size()).isBetween(2, 3);
            JsonNode entry = position.get(Integer.toString(prompt[p]));
            assertThat(entry.fieldNames()).toIterable().containsExactly("logprob", "rank", "decoded_token");
            assertThat(entry.get("logprob").asDouble()).isLessThanOrEqualTo(0.0);
            assertThat(entry.get("rank").asInt()).isPositive();
            assertThat(entry.get("decoded_token").asText())
                    .isEqualTo(runtime.tokenizer().decode(new int[] {prompt[p]}, false));
            int ranked = 0;
            for (Map.Entry<String, JsonNode> e : position.properties()) {
                ranked += e.getValue().get("rank").asInt() == 1 ? 1 : 0;
            }
            assertThat(ranked).as("position %d has a most likely token", p).isGreaterThanOrEqualTo(1);
        }
        // the SDK keeps the unknown field on the choice
        Completion viaSdk = client.completions().create(greedy(c.prompt(), 4)
                .putAdditionalBodyProperty("prompt_logprobs", JsonValue.from(0)).build());
        JsonValue field = viaSdk.choices().getFirst()._additionalProperties().get("prompt_logprobs");
        assertThat(field).isNotNull();
        assertThat(field.toString()).startsWith("[null");
        // chat: on the response, as vLLM puts it
        Http.Response chat = http.post("/v1/chat/completions", """
                {"model":"sort","messages":[{"role":"user","content":%s}],"max_tokens":2,"prompt_logprobs":1}"""
                .formatted(JSON.writeValueAsString(c.user())));
        assertThat(chat.status()).isEqualTo(200);
        JsonNode chatBody = JSON.readTree(chat.bytes());
        assertThat(chatBody.get("prompt_logprobs").get(0).isNull()).isTrue();
        assertThat(chatBody.get("prompt_logprobs").size()).isEqualTo(chatBody.at("/usage/prompt_tokens").asInt());
        // without the option, no field
        Http.Response none = http.post("/v1/completions", """
                {"model":"sort","prompt":%s,"max_tokens":2}""".formatted(JSON.writeValueAsString(c.prompt())));
        assertThat(JSON.readTree(none.bytes()).at("/choices/0").has("prompt_logprobs")).isFalse();
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
            "bias too large | {\"prompt\":\"input: red\",\"logit_bias\":{\"5\":150}} | logit_bias",
            "bias key not a token id | {\"prompt\":\"input: red\",\"logit_bias\":{\"five\":1}} | logit_bias",
            "bias token outside the vocabulary | {\"prompt\":\"input: red\",\"logit_bias\":{\"99999999\":1}} | logit_bias",
            "bias not a number | {\"prompt\":\"input: red\",\"logit_bias\":{\"5\":\"up\"}} | logit_bias",
            "negative bias token | {\"prompt\":\"input: red\",\"logit_bias\":{\"-3\":1}} | logit_bias",
            "min_tokens above max_tokens | {\"prompt\":\"input: red\",\"max_tokens\":3,\"min_tokens\":4} | min_tokens",
            "negative min_tokens | {\"prompt\":\"input: red\",\"min_tokens\":-1} | min_tokens",
            "prompt_logprobs too many | {\"prompt\":\"input: red\",\"prompt_logprobs\":21} | prompt_logprobs",
            "negative prompt_logprobs | {\"prompt\":\"input: red\",\"prompt_logprobs\":-2} | prompt_logprobs",
            "prompt_logprobs with stream | {\"prompt\":\"input: red\",\"stream\":true,\"prompt_logprobs\":1} | prompt_logprobs"})
    void badValuesAre400NamingTheField(String name, String body, String field) throws Exception {
        Http.Response r = http.post("/v1/completions", body);
        assertThat(r.status()).as(name).isEqualTo(400);
        JsonNode error = JSON.readTree(r.bytes()).get("error");
        assertThat(error.get("param").asText()).as(name).startsWith(field); // "logit_bias.5" for a bad value type
        assertThat(error.get("message").asText()).as(name).contains(field).doesNotContain("Exception");
        Http.Response chat = http.post("/v1/chat/completions", body.replace("\"prompt\":\"input: red\"",
                "\"messages\":[{\"role\":\"user\",\"content\":\"red\"}]"));
        assertThat(chat.status()).as("chat " + name).isEqualTo(400);
        assertThat(JSON.readTree(chat.bytes()).at("/error/param").asText()).startsWith(field);
    }

    @Test
    void tooManyBiasesAreRefusedThroughTheSdk() {
        CompletionCreateParams.LogitBias.Builder bias = CompletionCreateParams.LogitBias.builder();
        for (int t = 0; t < 301; t++) {
            bias.putAdditionalProperty(Integer.toString(t), JsonValue.from(1));
        }
        assertThatThrownBy(() -> client.completions().create(greedy("input: red", 2).logitBias(bias.build()).build()))
                .isInstanceOf(BadRequestException.class).hasMessageContaining("logit_bias")
                .hasMessageContaining("300");
    }
}
