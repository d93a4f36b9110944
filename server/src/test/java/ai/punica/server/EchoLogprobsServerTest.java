package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionChoice;
import com.openai.models.completions.CompletionCreateParams;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code echo} with {@code logprobs} on /v1/completions, as vLLM answers it and lm-evaluation-harness's
 * {@code local-completions} scores log-likelihoods with it: the legacy logprobs arrays cover the prompt's tokens
 * (the first with null log-probability) and then the generated ones, and the text is prompt + completion.
 */
class EchoLogprobsServerTest {
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
        client = OpenAIOkHttpClient.builder().baseUrl(server.baseUrl() + "/v1").apiKey("unused").maxRetries(2)
                .timeout(Duration.ofSeconds(60)).build();
    }

    @AfterAll
    static void stop() {
        client.close();
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static JsonNode post(String body) throws Exception {
        Http.Response r = http.post("/v1/completions", body);
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        return JSON.readTree(r.bytes());
    }

    private static String tokenText(int id) {
        return runtime.tokenizer().decode(new int[] {id}, false);
    }

    @Test
    void promptTokensComeFirstWithThePromptLogprobsOfTheEngine() throws Exception {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        String prompt = JSON.writeValueAsString(c.prompt());
        int[] ids = runtime.tokenizer().encode(c.prompt(), true);
        JsonNode echoed = post("""
                {"model":"sort","prompt":%s,"max_tokens":3,"temperature":0,"echo":true,"logprobs":2}"""
                .formatted(prompt)).at("/choices/0");
        JsonNode plain = post("""
                {"model":"sort","prompt":%s,"max_tokens":3,"temperature":0,"logprobs":2,"prompt_logprobs":2}"""
                .formatted(prompt)).at("/choices/0");

        String completion = plain.get("text").asText();
        assertThat(echoed.get("text").asText()).isEqualTo(c.prompt() + completion);
        JsonNode lp = echoed.get("logprobs");
        int generated = plain.at("/logprobs/tokens").size();
        assertThat(generated).isPositive();
        for (String field : List.of("tokens", "token_logprobs", "top_logprobs", "text_offset")) {
            assertThat(lp.get(field)).as(field).hasSize(ids.length + generated);
        }
        assertThat(lp.at("/token_logprobs/0").isNull()).isTrue();
        assertThat(lp.at("/top_logprobs/0").isNull()).isTrue();
        JsonNode promptLogprobs = plain.get("prompt_logprobs");
        // as vLLM, the echoed request's choice carries its prompt_logprobs too: the very same numbers
        JsonNode own = echoed.get("prompt_logprobs");
        assertThat(own).hasSize(ids.length);
        for (int p = 0; p < ids.length; p++) {
            assertThat(lp.at("/tokens/" + p).asText()).as("prompt token %d", p).isEqualTo(tokenText(ids[p]));
            if (p == 0) {
                assertThat(own.get(0).isNull()).isTrue();
                continue;
            }
            String id = Integer.toString(ids[p]);
            assertThat(lp.at("/token_logprobs/" + p).floatValue()).as("prompt token %d", p)
                    .isEqualTo(own.get(p).get(id).get("logprob").floatValue());
            // the separate request: the same up to float rounding (see assertClose)
            assertClose(lp.at("/token_logprobs/" + p).asDouble(),
                    promptLogprobs.get(p).get(id).get("logprob").asDouble());
            JsonNode top = lp.at("/top_logprobs/" + p);
            // vLLM: the prompt token first, then the most likely tokens, logprobs + 1 in all (or logprobs when the
            // prompt token is among them)
            assertThat(top.fieldNames().next()).isEqualTo(tokenText(ids[p]));
            assertThat(top.get(tokenText(ids[p])).floatValue()).isEqualTo(lp.at("/token_logprobs/" + p).floatValue());
            assertThat(top.size()).isBetween(2, 3);
        }
        // the generated part is what the request without echo gives
        for (int g = 0; g < generated; g++) {
            assertThat(lp.at("/tokens/" + (ids.length + g))).isEqualTo(plain.at("/logprobs/tokens/" + g));
            assertClose(lp.at("/token_logprobs/" + (ids.length + g)).asDouble(),
                    plain.at("/logprobs/token_logprobs/" + g).asDouble());
        }
        // text_offset: each token starts where the one before ends (vLLM counts every token's text, the first too)
        assertThat(lp.at("/text_offset/0").asInt()).isZero();
        StringBuilder joined = new StringBuilder();
        for (int i = 0; i < lp.get("tokens").size(); i++) {
            assertThat(lp.at("/text_offset/" + i).asInt()).isEqualTo(joined.length());
            joined.append(lp.at("/tokens/" + i).asText());
        }
        assertThat(joined.toString()).endsWith(completion);
    }

    @Test
    void loglikelihoodRequestAsLmEvalSendsIt() throws Exception {
        // lm-evaluation-harness: context + continuation as the prompt, echo, logprobs 1, max_tokens 1, temperature 0;
        // it sums token_logprobs over the continuation's tokens
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        String text = c.prompt() + " " + c.expected();
        JsonNode choice = post("""
                {"model":"sort","prompt":%s,"max_tokens":1,"temperature":0,"echo":true,"logprobs":1}"""
                .formatted(JSON.writeValueAsString(text))).at("/choices/0");
        int[] ids = runtime.tokenizer().encode(text, true);
        JsonNode lp = choice.at("/logprobs/token_logprobs");
        assertThat(lp).hasSize(ids.length + 1);
        int context = runtime.tokenizer().encode(c.prompt(), true).length;
        double sum = 0;
        for (int i = context; i < ids.length; i++) {
            sum += lp.get(i).asDouble();
        }
        // the demo model knows the answer: the continuation is likely
        assertThat(sum).isLessThan(0.0).isGreaterThan(-ids.length);
    }

    @Test
    void batchPromptsAndSeveralChoicesThroughTheSdk() {
        List<EvalCase> cases = TestServers.eval("sort", 2);
        Completion r = client.completions().create(CompletionCreateParams.builder().model("sort")
                .promptOfArrayOfStrings(List.of(cases.get(0).prompt(), cases.get(1).prompt())).maxTokens(4)
                .temperature(0.0).n(2).echo(true).logprobs(1).build());
        assertThat(r.choices()).hasSize(4);
        for (CompletionChoice choice : r.choices()) {
            String prompt = cases.get((int) choice.index() / 2).prompt();
            int[] ids = runtime.tokenizer().encode(prompt, true);
            assertThat(choice.text()).startsWith(prompt);
            CompletionChoice.Logprobs lp = choice.logprobs().orElseThrow();
            List<String> tokens = lp.tokens().orElseThrow();
            int generated = runtime.tokenizer().encode(choice.text().substring(prompt.length()), false).length;
            assertThat(tokens.size()).isGreaterThan(ids.length);
            assertThat(tokens.size()).isLessThanOrEqualTo(ids.length + 4);
            assertThat(generated).isLessThanOrEqualTo(4);
            for (int p = 0; p < ids.length; p++) {
                assertThat(tokens.get(p)).isEqualTo(tokenText(ids[p]));
            }
            List<Double> values = lp.tokenLogprobs().orElseThrow();
            assertThat(values.getFirst()).isNull();
            assertThat(values.subList(1, values.size())).allSatisfy(v -> assertThat(v).isNotNull().isLessThanOrEqualTo(0.0));
            assertThat(lp.textOffset().orElseThrow()).hasSize(tokens.size());
        }
        // the two choices of one prompt share the prompt's part
        int length = runtime.tokenizer().encode(cases.get(0).prompt(), true).length;
        List<Double> first = r.choices().get(0).logprobs().orElseThrow().tokenLogprobs().orElseThrow();
        List<Double> second = r.choices().get(1).logprobs().orElseThrow().tokenLogprobs().orElseThrow();
        for (int p = 1; p < length; p++) {
            assertClose(first.get(p), second.get(p));
        }
    }

    /**
     * The same log-probability from two engine runs: equal up to float rounding (the CPU backend's vector code
     * rounds the last bits differently for other batch shapes, and before and after the JIT compiles it).
     */
    private static void assertClose(double actual, double expected) {
        assertThat(actual).isCloseTo(expected, within(1e-6 * Math.max(1, Math.abs(expected))));
    }

    @Test
    void streamedGivesWhatTheWholeResponseGives() throws Exception {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        String body = """
                {"model":"sort","prompt":%s,"max_tokens":5,"temperature":0,"echo":true,"logprobs":2"""
                .formatted(JSON.writeValueAsString(c.prompt()));
        JsonNode whole = post(body + "}").at("/choices/0");
        StringBuilder text = new StringBuilder();
        ArrayNode tokens = JSON.createArrayNode();
        ArrayNode values = JSON.createArrayNode();
        ArrayNode offsets = JSON.createArrayNode();
        List<String> finishes = new ArrayList<>();
        int[] ids = runtime.tokenizer().encode(c.prompt(), true);
        boolean first = true;
        for (String data : Http.sseData(http.post("/v1/completions", body + ",\"stream\":true}").body())) {
            if (data.equals("[DONE]")) {
                continue;
            }
            JsonNode choice = JSON.readTree(data).at("/choices/0");
            if (first) {
                // as vLLM: the first chunk is the prompt with its logprobs and the first generated token(s)
                assertThat(choice.get("text").asText()).startsWith(c.prompt());
                assertThat(choice.at("/logprobs/tokens").size()).isGreaterThan(ids.length);
                assertThat(choice.at("/logprobs/token_logprobs/0").isNull()).isTrue();
                first = false;
            }
            text.append(choice.get("text").asText());
            if (!choice.get("logprobs").isNull()) {
                tokens.addAll((ArrayNode) choice.at("/logprobs/tokens"));
                values.addAll((ArrayNode) choice.at("/logprobs/token_logprobs"));
                offsets.addAll((ArrayNode) choice.at("/logprobs/text_offset"));
            }
            if (!choice.get("finish_reason").isNull()) {
                finishes.add(choice.get("finish_reason").asText());
            }
        }
        assertThat(text.toString()).isEqualTo(whole.get("text").asText()).startsWith(c.prompt());
        assertThat(tokens).isEqualTo(whole.at("/logprobs/tokens"));
        JsonNode wholeValues = whole.at("/logprobs/token_logprobs");
        assertThat(values).hasSize(wholeValues.size());
        assertThat(values.get(0).isNull()).isTrue();
        for (int i = 1; i < values.size(); i++) {
            assertClose(values.get(i).asDouble(), wholeValues.get(i).asDouble());
        }
        assertThat(offsets).isEqualTo(whole.at("/logprobs/text_offset"));
        assertThat(finishes).containsExactly(whole.get("finish_reason").asText());
    }

    @Test
    void maxTokensZeroWithEchoScoresThePromptAndGeneratesNothing() throws Exception {
        // vLLM: echo with max_tokens 0 returns each prompt, its legacy logprobs covering the prompt tokens only
        List<EvalCase> cases = TestServers.eval("sort", 2);
        String prompts = JSON.writeValueAsString(List.of(cases.get(0).prompt(), cases.get(1).prompt()));
        JsonNode body = post("""
                {"model":"sort","prompt":%s,"max_tokens":0,"temperature":0,"echo":true,"logprobs":2,"n":2}"""
                .formatted(prompts));
        // what the same request with one generated token gives for the prompts' part
        JsonNode oneToken = post("""
                {"model":"sort","prompt":%s,"max_tokens":1,"temperature":0,"echo":true,"logprobs":2}"""
                .formatted(prompts));
        JsonNode choices = body.get("choices");
        assertThat(choices).hasSize(4);
        int promptTokens = 0;
        for (int i = 0; i < 4; i++) {
            String prompt = cases.get(i / 2).prompt();
            int[] ids = runtime.tokenizer().encode(prompt, true);
            if (i % 2 == 0) {
                promptTokens += ids.length;
            }
            JsonNode choice = choices.get(i);
            assertThat(choice.get("index").asInt()).isEqualTo(i);
            assertThat(choice.get("text").asText()).isEqualTo(prompt);
            assertThat(choice.get("finish_reason").asText()).isEqualTo("length");
            JsonNode lp = choice.get("logprobs");
            for (String field : List.of("tokens", "token_logprobs", "top_logprobs", "text_offset")) {
                assertThat(lp.get(field)).as(field).hasSize(ids.length);
            }
            JsonNode reference = oneToken.at("/choices/" + i / 2 + "/logprobs");
            assertThat(lp.at("/token_logprobs/0").isNull()).isTrue();
            for (int p = 0; p < ids.length; p++) {
                assertThat(lp.at("/tokens/" + p).asText()).isEqualTo(tokenText(ids[p]));
                assertThat(lp.at("/text_offset/" + p)).isEqualTo(reference.at("/text_offset/" + p));
                if (p > 0) {
                    assertClose(lp.at("/token_logprobs/" + p).asDouble(), reference.at("/token_logprobs/" + p).asDouble());
                    assertThat(lp.at("/top_logprobs/" + p).size()).isBetween(2, 3);
                }
            }
        }
        // as vLLM, each prompt counts once whatever n is
        assertThat(body.at("/usage/prompt_tokens").asInt()).isEqualTo(promptTokens);
        assertThat(body.at("/usage/completion_tokens").asInt()).isZero();
        assertThat(body.at("/usage/total_tokens").asInt()).isEqualTo(promptTokens);

        // without logprobs: the prompt and nothing else
        JsonNode plain = post("""
                {"model":"sort","prompt":%s,"max_tokens":0,"echo":true}"""
                .formatted(JSON.writeValueAsString(cases.get(0).prompt())));
        assertThat(plain.at("/choices/0/text").asText()).isEqualTo(cases.get(0).prompt());
        assertThat(plain.at("/choices/0/logprobs").isNull()).isTrue();
        assertThat(plain.at("/usage/completion_tokens").asInt()).isZero();
    }

    @Test
    void maxTokensZeroWithEchoStreamed() throws Exception {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        int[] ids = runtime.tokenizer().encode(c.prompt(), true);
        String prompt = JSON.writeValueAsString(c.prompt());
        for (boolean logprobs : List.of(true, false)) {
            String body = """
                    {"model":"sort","prompt":%s,"max_tokens":0,"echo":true,"n":2,"stream":true,                    "stream_options":{"include_usage":true}%s}""".formatted(prompt, logprobs ? ",\"logprobs\":1" : "");
            StringBuilder[] text = {new StringBuilder(), new StringBuilder()};
            int[] tokens = new int[2];
            List<String> finishes = new ArrayList<>();
            JsonNode usage = null;
            for (String data : Http.sseData(http.post("/v1/completions", body).body())) {
                if (data.equals("[DONE]")) {
                    continue;
                }
                JsonNode chunk = JSON.readTree(data);
                if (chunk.get("choices").isEmpty()) {
                    usage = chunk.get("usage");
                    continue;
                }
                JsonNode choice = chunk.at("/choices/0");
                int index = choice.get("index").asInt();
                text[index].append(choice.get("text").asText());
                if (!choice.get("logprobs").isNull()) {
                    assertThat(logprobs).isTrue();
                    tokens[index] += choice.at("/logprobs/tokens").size();
                    assertThat(choice.at("/logprobs/token_logprobs/0").isNull()).isTrue();
                }
                if (!choice.get("finish_reason").isNull()) {
                    finishes.add(index + " " + choice.get("finish_reason").asText());
                }
            }
            for (int i = 0; i < 2; i++) {
                assertThat(text[i].toString()).as("logprobs %s choice %d", logprobs, i).isEqualTo(c.prompt());
                assertThat(tokens[i]).isEqualTo(logprobs ? ids.length : 0);
            }
            assertThat(finishes).containsExactlyInAnyOrder("0 length", "1 length");
            assertThat(usage).isNotNull();
            assertThat(usage.get("prompt_tokens").asInt()).isEqualTo(ids.length);
            assertThat(usage.get("completion_tokens").asInt()).isZero();
        }
    }

    @Test
    void maxTokensZeroWithEchoThroughTheSdk() {
        EvalCase c = TestServers.eval("upper", 1).getFirst();
        Completion r = client.completions().create(CompletionCreateParams.builder().model("upper").prompt(c.prompt())
                .maxTokens(0).echo(true).logprobs(0).build());
        CompletionChoice choice = r.choices().getFirst();
        assertThat(choice.text()).isEqualTo(c.prompt());
        int[] ids = runtime.tokenizer().encode(c.prompt(), true);
        CompletionChoice.Logprobs lp = choice.logprobs().orElseThrow();
        assertThat(lp.tokens().orElseThrow()).hasSize(ids.length);
        // logprobs 0: each prompt token's entry holds that token alone (vLLM's)
        var top = lp.topLogprobs().orElseThrow();
        assertThat(top.get(1)._additionalProperties()).hasSize(1).containsKey(tokenText(ids[1]));
        assertThat(r.usage().orElseThrow().completionTokens()).isZero();
        assertThat(choice.finishReason()).isEqualTo(CompletionChoice.FinishReason.LENGTH);
    }
}
