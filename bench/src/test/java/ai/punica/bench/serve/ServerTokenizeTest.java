package ai.punica.bench.serve;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.tokenizer.Tokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Exact prompt lengths counted by a server's {@code POST /tokenize} (vLLM's route; Punica-J has none). No
 * vLLM runs here, so a JDK HTTP server answers in vLLM's format ({"count", "max_model_len", "tokens"}) with the
 * project's tokenizer: what is tested is the client's side of that contract and the search over counts.
 */
class ServerTokenizeTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void promptsOfExactLengthsFromTheServersTokenCounts() throws IOException {
        Tokenizer tokenizer = Tokenizer.load(Fixtures.model());
        AtomicInteger calls = new AtomicInteger();
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/tokenize", exchange -> {
            calls.incrementAndGet();
            JsonNode body = JSON.readTree(exchange.getRequestBody());
            int[] ids = tokenizer.encode(body.get("prompt").asText(), true);
            ObjectNode answer = JSON.createObjectNode().put("count", ids.length).put("max_model_len", 1024);
            for (int id : ids) {
                answer.withArray("tokens").add(id);
            }
            byte[] bytes = answer.toString().getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().add("Content-Type", "application/json");
            exchange.sendResponseHeaders(body.get("model").asText().equals("demo") ? 200 : 404, bytes.length);
            exchange.getResponseBody().write(bytes);
            exchange.close();
        });
        server.start();
        try {
            URI root = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/");
            var http = OpenAiStreamClient.newHttpClient();
            assertThat(TokenCounter.Server.probe(http, root, "other", null)).as("a 404 means no /tokenize").isEmpty();
            TokenCounter counter = TokenCounter.Server.probe(http, root, "demo", null).orElseThrow();
            PromptMaker maker = new PromptMaker(counter);
            SplittableRandom random = new SplittableRandom(8);
            for (int tokens : new int[] {5, 64, 256}) {
                calls.set(0);
                PromptSample s = maker.make(tokens, 16, random);
                assertThat(tokenizer.encode(s.prompt(), true)).as("prompt of %d tokens", tokens).hasSize(tokens);
                assertThat(s.promptTokens()).isEqualTo(tokens);
                assertThat(calls.get()).as("a binary search, not a scan").isLessThan(40);
            }
        } finally {
            server.stop(0);
        }
    }
}
