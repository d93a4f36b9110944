package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The exact bytes of responses: SSE framing, chunk shapes, error bodies. */
class WireFormatTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> { });
        http = new Http(server, null);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static String quote(String s) throws Exception {
        return JSON.writeValueAsString(s);
    }

    @Test
    void chatStreamIsRoleChunkThenDeltasThenFinishThenUsageThenDone() throws Exception {
        EvalCase c = TestServers.eval("upper", 1).getFirst();
        Http.Response r = http.post("/v1/chat/completions", """
                {"model":"upper","messages":[{"role":"user","content":%s}],"max_tokens":32,"temperature":0,
                 "stream":true,"stream_options":{"include_usage":true}}""".formatted(quote(c.user())));
        assertThat(r.status()).isEqualTo(200);
        assertThat(r.contentType()).isEqualTo("text/event-stream; charset=utf-8");
        List<String> data = Http.sseData(r.body());
        assertThat(data.getLast()).isEqualTo("[DONE]");

        JsonNode first = JSON.readTree(data.getFirst());
        String id = first.get("id").asText();
        long created = first.get("created").asLong();
        assertThat(id).matches("chatcmpl-[0-9a-f]{32}");
        String head = "{\"id\":\"" + id + "\",\"object\":\"chat.completion.chunk\",\"created\":" + created
                + ",\"model\":\"upper\",";
        assertThat(data.getFirst()).isEqualTo(head + "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                + "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");

        StringBuilder text = new StringBuilder();
        List<String> deltas = data.subList(1, data.size() - 3);
        assertThat(deltas).isNotEmpty();
        for (String d : deltas) {
            JsonNode chunk = JSON.readTree(d);
            assertThat(d).startsWith(head);
            String piece = chunk.at("/choices/0/delta/content").asText();
            assertThat(d).isEqualTo(head + "\"choices\":[{\"index\":0,\"delta\":{\"content\":" + quote(piece)
                    + "},\"logprobs\":null,\"finish_reason\":null}]}");
            text.append(piece);
        }
        assertThat(text.toString()).isEqualTo(c.expected());
        assertThat(data.get(data.size() - 3)).isEqualTo(head + "\"choices\":[{\"index\":0,\"delta\":{},"
                + "\"logprobs\":null,\"finish_reason\":\"stop\"}]}");

        JsonNode usage = JSON.readTree(data.get(data.size() - 2)).get("usage");
        int prompt = usage.get("prompt_tokens").asInt();
        int completion = usage.get("completion_tokens").asInt();
        assertThat(data.get(data.size() - 2)).isEqualTo(head + "\"choices\":[],\"usage\":{\"prompt_tokens\":" + prompt
                + ",\"completion_tokens\":" + completion + ",\"total_tokens\":" + (prompt + completion) + "}}");
        // At most one chunk per token; the last token, </s>, adds no text.
        assertThat(deltas.size()).isLessThanOrEqualTo(completion - 1);
    }

    @Test
    void completionStreamWithoutUsageEndsWithFinishChunkAndDone() throws Exception {
        EvalCase c = TestServers.eval("reverse", 1).getFirst();
        Http.Response r = http.post("/v1/completions", """
                {"model":"reverse","prompt":%s,"max_tokens":32,"temperature":0,"stream":true}"""
                .formatted(quote(c.prompt())));
        List<String> data = Http.sseData(r.body());
        assertThat(data.getLast()).isEqualTo("[DONE]");
        StringBuilder text = new StringBuilder();
        for (String d : data.subList(0, data.size() - 1)) {
            JsonNode chunk = JSON.readTree(d);
            assertThat(chunk.get("object").asText()).isEqualTo("text_completion");
            assertThat(chunk.has("usage")).isFalse();
            assertThat(chunk.at("/choices/0/logprobs").isNull()).isTrue();
            text.append(chunk.at("/choices/0/text").asText());
        }
        assertThat(text.toString().trim()).isEqualTo(c.expected());
        JsonNode last = JSON.readTree(data.get(data.size() - 2));
        assertThat(last.at("/choices/0/finish_reason").asText()).isEqualTo("stop");
    }

    @Test
    void wholeCompletionHasOpenAiFieldsAndLegacyLogprobs() throws Exception {
        EvalCase c = TestServers.eval("sort", 1).getFirst();
        Http.Response r = http.post("/v1/completions", """
                {"model":"sort","prompt":%s,"max_tokens":32,"temperature":0,"logprobs":2}"""
                .formatted(quote(c.prompt())));
        assertThat(r.status()).isEqualTo(200);
        assertThat(r.contentType()).isEqualTo("application/json");
        JsonNode body = JSON.readTree(r.bytes());
        assertThat(body.fieldNames()).toIterable().containsExactly("id", "object", "created", "model", "choices", "usage");
        JsonNode choice = body.at("/choices/0");
        assertThat(choice.fieldNames()).toIterable().containsExactly("index", "text", "logprobs", "finish_reason");
        String text = choice.get("text").asText();
        assertThat(text.trim()).isEqualTo(c.expected());
        JsonNode lp = choice.get("logprobs");
        int tokens = body.at("/usage/completion_tokens").asInt();
        assertThat(lp.get("tokens")).hasSize(tokens);
        assertThat(lp.get("token_logprobs")).hasSize(tokens);
        assertThat(lp.get("top_logprobs")).hasSize(tokens);
        assertThat(lp.get("text_offset").get(0).asInt()).isZero();
        StringBuilder joined = new StringBuilder();
        for (int i = 0; i < tokens - 1; i++) { // the last token is </s>, which is not part of the text
            assertThat(lp.get("text_offset").get(i).asInt()).isEqualTo(joined.length());
            joined.append(lp.get("tokens").get(i).asText());
            assertThat(lp.get("top_logprobs").get(i).size()).isBetween(1, 2);
        }
        assertThat(joined.toString()).isEqualTo(text);
    }

    @Test
    void errorsAreOpenAiErrorObjects() {
        Http.Response notFound = http.post("/v1/completions", "{\"model\":\"nope\",\"prompt\":\"input: red\"}");
        assertThat(notFound.status()).isEqualTo(404);
        assertThat(notFound.contentType()).isEqualTo("application/json");
        assertThat(notFound.body()).isEqualTo("{\"error\":{\"message\":\"The model `nope` does not exist.\","
                + "\"type\":\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}");

        Http.Response badType = http.post("/v1/completions", "{\"prompt\":\"input: red\",\"max_tokens\":\"ten\"}");
        assertThat(badType.status()).isEqualTo(400);
        assertThat(badType.body()).isEqualTo("{\"error\":{\"message\":\"`max_tokens` must be an integer, got a string "
                + "\\\"ten\\\".\",\"type\":\"invalid_request_error\",\"param\":\"max_tokens\",\"code\":null}}");

        Http.Response route = http.get("/v1/nothing");
        assertThat(route.status()).isEqualTo(404);
        assertThat(route.body()).contains("\"code\":\"unknown_url\"");
        assertThat(http.get("/v1/completions").status()).isEqualTo(405);
    }

    @Test
    void healthIsEmpty200() {
        Http.Response r = http.get("/health");
        assertThat(r.status()).isEqualTo(200);
        assertThat(r.bytes()).isEmpty();
    }
}
