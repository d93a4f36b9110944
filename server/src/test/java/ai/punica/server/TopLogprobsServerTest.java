package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The {@code top_logprobs} of generated tokens as vLLM builds them: the sampled token comes first, then the most
 * likely ones. Completions' dict holds it besides the {@code logprobs} most likely (k + 1 entries when it is not among
 * them); chat's list holds {@code top_logprobs} entries, the sampled token's first. Sampled at a high temperature
 * with a seed, so some positions pick a token that is not the most likely, whole and streamed.
 */
class TopLogprobsServerTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String PROMPT = "input: red apple stone\\noutput:";
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

    private static JsonNode post(String path, String body) throws Exception {
        Http.Response r = http.post(path, body);
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        return JSON.readTree(r.bytes());
    }

    private static List<JsonNode> streamed(String path, String body) throws Exception {
        Http.Response r = http.post(path, body);
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        List<JsonNode> chunks = new ArrayList<>();
        for (String data : Http.sseData(r.body())) {
            if (!data.equals("[DONE]")) {
                chunks.add(JSON.readTree(data));
            }
        }
        return chunks;
    }

    @Test
    void completionsTopLogprobsHoldTheSampledTokenFirst() throws Exception {
        int notMostLikely = 0;
        for (int seed = 1; seed <= 4; seed++) {
            String body = """
                    {"model":"fixture-base","prompt":"%s","max_tokens":24,"temperature":3,"seed":%d,"ignore_eos":true,\
                    "logprobs":1""".formatted(PROMPT, seed);
            JsonNode lp = post("/v1/completions", body + "}").at("/choices/0/logprobs");
            JsonNode tokens = lp.get("tokens");
            assertThat(tokens).hasSize(24);
            for (int i = 0; i < tokens.size(); i++) {
                JsonNode top = lp.at("/top_logprobs/" + i);
                String sampled = tokens.get(i).asText();
                float own = lp.at("/token_logprobs/" + i).floatValue();
                Iterator<Map.Entry<String, JsonNode>> entries = top.fields();
                Map.Entry<String, JsonNode> first = entries.next();
                assertThat(first.getKey()).as("seed %d position %d", seed, i).isEqualTo(sampled);
                assertThat(first.getValue().floatValue()).isEqualTo(own);
                assertThat(top.size()).isBetween(1, 2);
                if (top.size() == 2) {
                    // the most likely token, which was not sampled: the k + 1-th entry
                    assertThat(entries.next().getValue().floatValue()).isGreaterThanOrEqualTo(own);
                    notMostLikely++;
                }
            }
            // streamed: the same entries, chunk after chunk
            ArrayNode streamedTop = JSON.createArrayNode();
            for (JsonNode chunk : streamed("/v1/completions", body + ",\"stream\":true}")) {
                JsonNode chunkLogprobs = chunk.at("/choices/0/logprobs");
                if (!chunkLogprobs.isMissingNode() && !chunkLogprobs.isNull()) {
                    streamedTop.addAll((ArrayNode) chunkLogprobs.get("top_logprobs"));
                }
            }
            assertThat(streamedTop).hasSize(24);
            for (int i = 0; i < 24; i++) {
                assertThat(fieldNames(streamedTop.get(i))).isEqualTo(fieldNames(lp.at("/top_logprobs/" + i)));
            }
        }
        assertThat(notMostLikely).as("positions that sampled a token other than the most likely").isPositive();
    }

    @Test
    void logprobsZeroHoldsTheSampledTokenAlone() throws Exception {
        JsonNode lp = post("/v1/completions", """
                {"model":"fixture-base","prompt":"%s","max_tokens":6,"temperature":3,"seed":5,"ignore_eos":true,\
                "logprobs":0}""".formatted(PROMPT)).at("/choices/0/logprobs");
        for (int i = 0; i < 6; i++) {
            assertThat(fieldNames(lp.at("/top_logprobs/" + i))).containsExactly(lp.at("/tokens/" + i).asText());
        }
    }

    @Test
    void chatTopLogprobsStartWithTheSampledToken() throws Exception {
        int notMostLikely = 0;
        for (int seed = 1; seed <= 4; seed++) {
            String body = """
                    {"model":"fixture-base","messages":[{"role":"user","content":"red apple stone"}],"max_tokens":24,\
                    "temperature":3,"seed":%d,"ignore_eos":true,"logprobs":true,"top_logprobs":%d""";
            JsonNode two = post("/v1/chat/completions", body.formatted(seed, 2) + "}").at("/choices/0/logprobs/content");
            JsonNode three = post("/v1/chat/completions", body.formatted(seed, 3) + "}")
                    .at("/choices/0/logprobs/content");
            assertThat(two).hasSize(24);
            for (int i = 0; i < two.size(); i++) {
                JsonNode position = two.get(i);
                JsonNode top = position.get("top_logprobs");
                assertThat(top).as("seed %d position %d", seed, i).hasSize(2);
                assertThat(top.at("/0/token")).isEqualTo(position.get("token"));
                assertThat(top.at("/0/logprob")).isEqualTo(position.get("logprob"));
                assertThat(top.at("/0/bytes")).isEqualTo(position.get("bytes"));
                // one more asked for: the same entries, and one after them
                assertThat(three.get(i).get("top_logprobs")).hasSize(3);
                assertSameEntry(three.at("/" + i + "/top_logprobs/0"), top.get(0));
                assertSameEntry(three.at("/" + i + "/top_logprobs/1"), top.get(1));
                if (top.at("/1/logprob").floatValue() > position.get("logprob").floatValue()) {
                    notMostLikely++;
                }
            }
            // streamed: the same entries
            ArrayNode content = JSON.createArrayNode();
            for (JsonNode chunk : streamed("/v1/chat/completions", body.formatted(seed, 2) + ",\"stream\":true}")) {
                JsonNode chunkContent = chunk.at("/choices/0/logprobs/content");
                if (chunkContent.isArray()) {
                    content.addAll((ArrayNode) chunkContent);
                }
            }
            assertThat(content).hasSize(two.size());
            for (int i = 0; i < two.size(); i++) {
                assertSameEntry(content.get(i), two.get(i));
                for (int k = 0; k < 2; k++) {
                    assertSameEntry(content.get(i).at("/top_logprobs/" + k), two.get(i).at("/top_logprobs/" + k));
                }
            }
        }
        assertThat(notMostLikely).as("positions that sampled a token other than the most likely").isPositive();
    }

    /**
     * The same chat logprob entry from two engine runs: the same token, the log-probability equal up to float rounding
     * (the CPU backend's vector code rounds the last bits differently before and after the JIT compiles it).
     */
    private static void assertSameEntry(JsonNode actual, JsonNode expected) {
        assertThat(actual.get("token")).isEqualTo(expected.get("token"));
        assertThat(actual.get("bytes")).isEqualTo(expected.get("bytes"));
        double e = expected.get("logprob").asDouble();
        assertThat(actual.get("logprob").asDouble()).isCloseTo(e, within(1e-5 * Math.max(1, Math.abs(e))));
    }

    private static List<String> fieldNames(JsonNode object) {
        List<String> names = new ArrayList<>();
        object.fieldNames().forEachRemaining(names::add);
        return names;
    }
}
