package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpRequest;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.time.Duration;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every kind of bad request gets its 4xx with an OpenAI error body naming what was wrong, and the
 * server keeps serving (checked after each case).
 */
class BadInputTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String KEY = "sk-bad-input";
    private static final int MAX_BODY = 64 * 1024;
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> b.apiKey(KEY).maxBodyBytes(MAX_BODY)
                .adapterRoot(ai.punica.Fixtures.path("adapters")));
        http = new Http(server, KEY);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static final String OK_PROMPT = "\"prompt\":\"input: red apple stone\\noutput:\"";

    static Stream<Arguments> badBodies() {
        return Stream.of(
                Arguments.of("malformed JSON", "/v1/completions", "{\"model\": \"upper\", " + OK_PROMPT, 400, null,
                        "Malformed JSON"),
                Arguments.of("not an object", "/v1/completions", "[1, 2]", 400, null, "must be a JSON object"),
                Arguments.of("empty body", "/v1/completions", "", 400, null, "empty"),
                Arguments.of("wrong type", "/v1/completions", "{" + OK_PROMPT + ",\"temperature\":\"hot\"}", 400,
                        "temperature", "`temperature` must be a number"),
                Arguments.of("fractional integer", "/v1/completions", "{" + OK_PROMPT + ",\"max_tokens\":2.5}", 400,
                        "max_tokens", "must be an integer"),
                Arguments.of("negative max_tokens", "/v1/completions", "{" + OK_PROMPT + ",\"max_tokens\":-3}", 400,
                        "max_tokens", "`max_tokens` must be at least 1, got -3"),
                Arguments.of("wrong type in a message", "/v1/chat/completions",
                        "{\"messages\":[{\"role\":7,\"content\":\"hi\"}]}", 400, "messages[0].role",
                        "`messages[0].role` must be a string, got an integer 7"),
                Arguments.of("tools", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                        + "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", 400, "tools",
                        "`tools` is not supported"),
                Arguments.of("response_format", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\","
                        + "\"content\":\"hi\"}],\"response_format\":{\"type\":\"json_object\"}}", 400,
                        "response_format", "Only `response_format`"),
                Arguments.of("huge n", "/v1/completions", "{" + OK_PROMPT + ",\"n\":1000}", 400, "n",
                        "`n` must be between 1 and 128, got 1000"),
                Arguments.of("duplicate key", "/v1/completions", "{" + OK_PROMPT + "," + OK_PROMPT + "}", 400, null,
                        "Duplicate field 'prompt'"),
                Arguments.of("temperature out of range", "/v1/completions", "{" + OK_PROMPT + ",\"temperature\":-1}",
                        400, "temperature", "invalid temperature -1.0"),
                Arguments.of("top_logprobs without logprobs", "/v1/chat/completions",
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_logprobs\":2}", 400,
                        "top_logprobs", "needs `logprobs` set to true"),
                Arguments.of("stream_options without stream", "/v1/completions",
                        "{" + OK_PROMPT + ",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options",
                        "only be set when `stream` is true"),
                Arguments.of("unknown role", "/v1/chat/completions",
                        "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400, "messages[0].role",
                        "must be one of"),
                Arguments.of("no messages", "/v1/chat/completions", "{\"messages\":[]}", 400, "messages",
                        "at least one message"),
                Arguments.of("echo and logprobs streamed with prompt_logprobs", "/v1/completions", "{" + OK_PROMPT
                        + ",\"stream\":true,\"echo\":true,\"logprobs\":1,\"prompt_logprobs\":2}", 400,
                        "prompt_logprobs", "not available when"),
                Arguments.of("prompt_logprobs out of range", "/v1/completions",
                        "{" + OK_PROMPT + ",\"prompt_logprobs\":99}", 400, "prompt_logprobs",
                        "Requested prompt logprobs of 99, which is greater than max allowed: 20 "
                        + "(parameter=prompt_logprobs, value=99)"),
                // vLLM: max_tokens 0 only with echo (which returns the prompt); -1 is the whole vocabulary, which is over
                // max_logprobs (20) for any real model, as on a vLLM server started without --max-logprobs
                Arguments.of("max_tokens 0 without echo", "/v1/completions", "{" + OK_PROMPT
                        + ",\"max_tokens\":0,\"echo\":false}", 400, "max_tokens", "`max_tokens` must be at least 1, got 0"),
                Arguments.of("max_tokens 0 streamed without echo", "/v1/completions", "{" + OK_PROMPT
                        + ",\"max_tokens\":0,\"stream\":true}", 400, "max_tokens", "must be at least 1, got 0"),
                Arguments.of("max_tokens 0 in chat", "/v1/chat/completions",
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0}", 400, "max_tokens",
                        "must be at least 1, got 0"),
                Arguments.of("prompt_logprobs -1", "/v1/completions", "{" + OK_PROMPT + ",\"prompt_logprobs\":-1}", 400,
                        "prompt_logprobs", "Requested prompt logprobs of 1024, which is greater than max allowed: 20 "
                        + "(parameter=prompt_logprobs, value=1024)"),
                Arguments.of("prompt_logprobs -1 in chat", "/v1/chat/completions",
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"prompt_logprobs\":-1}", 400,
                        "prompt_logprobs", "Requested prompt logprobs of 1024"),
                Arguments.of("prompt_logprobs -1 streamed", "/v1/completions", "{" + OK_PROMPT
                        + ",\"stream\":true,\"prompt_logprobs\":-1}", 400, "prompt_logprobs", "not available when"),
                Arguments.of("logprobs -1", "/v1/completions", "{" + OK_PROMPT + ",\"logprobs\":-1}", 400, "logprobs",
                        "Requested sample logprobs of 1024, which is greater than max allowed: 20 "
                        + "(parameter=logprobs, value=1024)"),
                Arguments.of("logprobs over max_logprobs", "/v1/completions", "{" + OK_PROMPT + ",\"logprobs\":21}",
                        400, "logprobs", "Requested sample logprobs of 21, which is greater than max allowed: 20"),
                Arguments.of("logprobs -2", "/v1/completions", "{" + OK_PROMPT + ",\"logprobs\":-2}", 400, "logprobs",
                        "`logprobs` must be -1 (every token of the vocabulary) or at least 0, got -2"),
                Arguments.of("top_logprobs -1", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\","
                        + "\"content\":\"hi\"}],\"logprobs\":true,\"top_logprobs\":-1}", 400, "top_logprobs",
                        "Requested sample logprobs of 1024, which is greater than max allowed: 20 "
                        + "(parameter=top_logprobs, value=1024)"),
                Arguments.of("top_logprobs -1 without logprobs", "/v1/chat/completions", "{\"messages\":[{\"role\":"
                        + "\"user\",\"content\":\"hi\"}],\"top_logprobs\":-1}", 400, "top_logprobs",
                        "needs `logprobs` set to true"),
                Arguments.of("top_logprobs -3", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\","
                        + "\"content\":\"hi\"}],\"logprobs\":true,\"top_logprobs\":-3}", 400, "top_logprobs",
                        "must be -1 (every token of the vocabulary) or at least 0, got -3"),
                Arguments.of("logit_bias out of range", "/v1/completions",
                        "{" + OK_PROMPT + ",\"logit_bias\":{\"5\":1000}}", 400, "logit_bias", "between -100 and 100"),
                Arguments.of("token id outside the vocabulary", "/v1/completions", "{\"prompt\":[1, 99999]}", 400,
                        "prompt", "outside the vocabulary"),
                Arguments.of("prompt too long", "/v1/completions",
                        "{\"prompt\":\"" + "red ".repeat(2000) + "\"}", 400, "prompt",
                        "maximum context length is 1024 tokens"),
                Arguments.of("prompt plus max_tokens too long", "/v1/completions",
                        "{" + OK_PROMPT + ",\"max_tokens\":5000}", 400, "max_tokens",
                        "maximum context length is 1024 tokens. However, you requested"),
                Arguments.of("unknown model", "/v1/completions", "{\"model\":\"gpt-4\"," + OK_PROMPT + "}", 404, "model",
                        "The model `gpt-4` does not exist."),
                Arguments.of("path traversal in lora_path", "/v1/load_lora_adapter",
                        "{\"lora_name\":\"evil\",\"lora_path\":\"../../../../etc\"}", 400, "lora_path",
                        "outside the adapter roots"),
                Arguments.of("missing lora_name", "/v1/load_lora_adapter", "{\"lora_path\":\"upper\"}", 400,
                        "lora_name", "`lora_name` is required"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badBodies")
    void badRequestGetsItsStatusAndAnOpenAiError(String name, String path, String body, int status, String param,
                                                  String message) throws Exception {
        Http.Response r = http.post(path, body);
        assertOpenAiError(r, status, param, message);
    }

    @Test
    void unknownFieldsAreAcceptedAndIgnored() throws Exception {
        Http.Response r = http.post("/v1/completions", "{\"model\":\"upper\"," + OK_PROMPT
                + ",\"max_tokens\":32,\"temperature\":0,\"max_tokenz\":3,\"store\":true,\"metadata\":{\"a\":\"b\"}}");
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        assertThat(JSON.readTree(r.bytes()).at("/choices/0/text").asText().trim()).isEqualTo("RED APPLE STONE");
        Http.Response chat = http.post("/v1/chat/completions", "{\"model\":\"upper\",\"temperature\":0,"
                + "\"messages\":[{\"role\":\"user\",\"content\":\"input: red apple stone\",\"mood\":\"happy\"}]}");
        assertThat(chat.status()).as(chat.body()).isEqualTo(200);
        assertThat(JSON.readTree(chat.bytes()).at("/choices/0/message/content").asText()).isEqualTo("RED APPLE STONE");
    }

    @Test
    void aToolCallHistoryIsAccepted() throws Exception {
        // As the SDKs send a conversation in which the assistant called a tool: content null, tool_calls,
        // then the tool's answer with tool_call_id.
        Http.Response r = http.post("/v1/chat/completions", "{\"model\":\"upper\",\"temperature\":0,\"messages\":["
                + "{\"role\":\"developer\",\"content\":\"answer in capitals\"},"
                + "{\"role\":\"user\",\"content\":\"look it up\"},"
                + "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
                + "\"function\":{\"name\":\"lookup\",\"arguments\":\"{}\"}}]},"
                + "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"blue river\"},"
                + "{\"role\":\"user\",\"content\":\"input: red apple stone\"}],\"max_tokens\":16}");
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        assertThat(JSON.readTree(r.bytes()).at("/choices/0/finish_reason").asText()).isIn("stop", "length");
    }

    @Test
    void nonUtf8BytesAre400() throws Exception {
        byte[] body = "{\"prompt\":\"input: red ?\"}".getBytes(StandardCharsets.US_ASCII);
        body[22] = (byte) 0xff; // the '?': a byte that never occurs in UTF-8
        Http.Response r = http.post("/v1/completions", body);
        assertOpenAiError(r, 400, null, "not valid UTF-8: byte 0xff at offset 22");
    }

    @Test
    void oversizedBodyIs413() throws Exception {
        String big = "{\"prompt\":\"" + "x".repeat(MAX_BODY) + "\"}";
        assertOpenAiError(http.post("/v1/completions", big), 413, null, "exceeds this server's limit of 65536 bytes");
    }

    /**
     * A client that writes its whole oversized body (16 times the limit) before it reads, as most clients do, reads the
     * 413 and its OpenAI error body, whether the body has a Content-Length or is chunked; the connection is not reset
     * under it.
     */
    @Test
    void aClientThatSendsItsWholeOversizedBodyFirstReadsThe413() throws Exception {
        byte[] body = ("{\"prompt\":\"" + "z".repeat(16 * MAX_BODY) + "\"}").getBytes(StandardCharsets.US_ASCII);
        for (boolean chunked : List.of(false, true)) {
            String head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY
                    + "\r\nContent-Type: application/json\r\n" + (chunked
                    ? "Transfer-Encoding: chunked\r\n\r\n" + Integer.toHexString(body.length) + "\r\n"
                    : "Content-Length: " + body.length + "\r\n\r\n");
            var request = new java.io.ByteArrayOutputStream();
            request.write(head.getBytes(StandardCharsets.US_ASCII));
            request.write(body);
            if (chunked) {
                request.write("\r\n0\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            }
            String response = Http.raw(server, request.toByteArray());
            assertThat(response).as(chunked ? "chunked" : "content-length").startsWith("HTTP/1.1 413")
                    .contains("\"code\":\"request_too_large\"");
        }
    }

    @Test
    void oversizedChunkedBodyIs413() throws Exception {
        byte[] chunk = ("{\"prompt\":\"" + "y".repeat(MAX_BODY) + "\"}").getBytes(StandardCharsets.US_ASCII);
        String head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY
                + "\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                + Integer.toHexString(chunk.length) + "\r\n";
        byte[] tail = "\r\n0\r\n\r\n".getBytes(StandardCharsets.US_ASCII);
        var request = new java.io.ByteArrayOutputStream();
        request.write(head.getBytes(StandardCharsets.US_ASCII));
        request.write(chunk);
        request.write(tail);
        String response = Http.raw(server, request.toByteArray());
        assertThat(response).startsWith("HTTP/1.1 413");
        assertThat(response).contains("\"code\":\"request_too_large\"");
    }

    @Test
    void missingOrWrongApiKeyIs401ButHealthAndMetricsStayOpen() throws Exception {
        Http anonymous = new Http(server, null);
        assertOpenAiError(anonymous.get("/v1/models"), 401, null, "Missing API key");
        Http wrong = new Http(server, "sk-wrong");
        assertOpenAiError(wrong.post("/v1/completions", "{" + OK_PROMPT + "}"), 401, null, "Incorrect API key");
        var notBearer = anonymous.send(HttpRequest.newBuilder(URI.create(server.baseUrl() + "/v1/models"))
                .header("Authorization", "Basic " + KEY).GET());
        assertThat(notBearer.status()).isEqualTo(401);
        assertThat(anonymous.get("/health").status()).isEqualTo(200);
        assertThat(anonymous.get("/metrics").status()).isEqualTo(200);
    }

    @Test
    void fullWaitingQueueIs429WithRetryAfter() throws Exception {
        try (var noQueue = TestServers.engine(TestServers.config(0))) {
            PunicaServer s = TestServers.start(noQueue, b -> { });
            try {
                var r = new Http(s, null).post("/v1/completions", "{" + OK_PROMPT + "}");
                assertOpenAiError(r, 429, null, "too many requests are waiting");
            } finally {
                s.stop(Duration.ofSeconds(1));
            }
        }
    }

    /** After every case: a good request still succeeds. */
    @AfterEach
    void serverStillServes() throws Exception {
        Http.Response ok = http.post("/v1/completions", "{\"model\":\"upper\"," + OK_PROMPT
                + ",\"max_tokens\":32,\"temperature\":0}");
        assertThat(ok.status()).as(ok.body()).isEqualTo(200);
        assertThat(JSON.readTree(ok.bytes()).at("/choices/0/text").asText().trim()).isEqualTo("RED APPLE STONE");
        assertThat(http.get("/health").status()).isEqualTo(200);
    }

    private static void assertOpenAiError(Http.Response r, int status, String param, String message) throws Exception {
        assertThat(r.status()).as(r.body()).isEqualTo(status);
        assertThat(r.contentType()).isEqualTo("application/json");
        JsonNode error = JSON.readTree(r.bytes()).get("error");
        assertThat(error).as(r.body()).isNotNull();
        assertThat(error.fieldNames()).toIterable().containsExactly("message", "type", "param", "code");
        assertThat(error.get("message").asText()).contains(message);
        assertThat(error.get("type").asText()).isNotEmpty();
        if (param == null) {
            assertThat(error.get("param").isNull()).as(r.body()).isTrue();
        } else {
            assertThat(error.get("param").asText()).isEqualTo(param);
        }
    }
}
