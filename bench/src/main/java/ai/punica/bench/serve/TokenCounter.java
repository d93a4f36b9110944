package ai.punica.bench.serve;

import ai.punica.tokenizer.Tokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Optional;

/**
 * Counts a prompt's tokens the way the server will (special tokens included: a Llama tokenizer's BOS counts, as
 * it does in the server's usage.prompt_tokens).
 */
public sealed interface TokenCounter {

    int count(String text);

    /** The project's tokenizer, loaded from a model directory (tokenizer.json + tokenizer_config.json). */
    record Local(Tokenizer tokenizer) implements TokenCounter {
        @Override
        public int count(String text) {
            return tokenizer.encode(text, true).length;
        }
    }

    /**
     * The server's own tokenizer through vLLM's {@code POST /tokenize} ({"model", "prompt"} → {"count", "tokens"}),
     * which is not an OpenAI route: {@link #probe} finds out whether the server has it.
     */
    record Server(HttpClient http, URI root, String model, String apiKey) implements TokenCounter {
        private static final ObjectMapper JSON = new ObjectMapper();

        /** The counter if {@code root}/tokenize answers for {@code model}, else empty. */
        public static Optional<Server> probe(HttpClient http, URI root, String model, String apiKey) {
            Server s = new Server(http, root, model, apiKey);
            try {
                s.count("hello");
                return Optional.of(s);
            } catch (RuntimeException e) {
                return Optional.empty();
            }
        }

        @Override
        public int count(String text) {
            try {
                String body = JSON.createObjectNode().put("model", model).put("prompt", text).toString();
                HttpRequest.Builder b = HttpRequest.newBuilder(root.resolve("/tokenize"))
                        .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString(body));
                if (apiKey != null) {
                    b.header("Authorization", "Bearer " + apiKey);
                }
                HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() != 200) {
                    throw new IllegalStateException("POST /tokenize answered HTTP " + r.statusCode());
                }
                JsonNode n = JSON.readTree(r.body());
                if (n.has("count")) {
                    return n.get("count").asInt();
                }
                if (n.has("tokens") && n.get("tokens").isArray()) {
                    return n.get("tokens").size();
                }
                throw new IllegalStateException("POST /tokenize answered without \"count\" or \"tokens\"");
            } catch (IOException e) {
                throw new IllegalStateException("POST /tokenize failed: " + e.getMessage(), e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted", e);
            }
        }
    }
}
