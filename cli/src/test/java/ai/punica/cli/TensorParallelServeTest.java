package ai.punica.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code punica serve --tensor-parallel 2} (CPU backend: two in-process ranks) against {@code punica serve}
 * on the same demo model, each a process of its own: greedy completions of the base model and of an adapter
 * are the same text and the same tokens.
 */
class TensorParallelServeTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private static final List<Process> processes = new ArrayList<>();
    private static URI whole;
    private static URI sharded;

    @BeforeAll
    static void startServers() throws Exception {
        CompletableFuture<URI> a = start("1");
        CompletableFuture<URI> b = start("2");
        whole = a.get(180, TimeUnit.SECONDS);
        sharded = b.get(180, TimeUnit.SECONDS);
    }

    private static CompletableFuture<URI> start(String ranks) throws IOException {
        ServeProcess p = ServeProcess.start(List.of("-Dpunica.cpu.threads=1",
                "-Dorg.slf4j.simpleLogger.log.ai.punica.engine.Engine=info"), "--max-running", "4",
                "--tensor-parallel", ranks);
        processes.add(p.process());
        return p.url().thenApply(url -> {
            try {
                // The engine's start-up log line names its backend: rank 0's, "×N (tensor parallel)" when split.
                String startup = Files.readString(p.log());
                assertThat(startup.contains("(tensor parallel)")).as(startup).isEqualTo(!ranks.equals("1"));
                return url;
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
    }

    @AfterAll
    static void stop() {
        processes.forEach(Process::destroyForcibly);
    }

    private static JsonNode complete(URI base, String model, String prompt) throws Exception {
        String body = JSON.createObjectNode().put("model", model).put("prompt", prompt).put("max_tokens", 24)
                .put("temperature", 0).put("logprobs", 1).toString();
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(base.resolve("/v1/completions"))
                .timeout(Duration.ofSeconds(300)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        return JSON.readTree(r.body()).get("choices").get(0);
    }

    @Test
    void greedyCompletionsEqualTheUnshardedServers() throws Exception {
        for (String model : new String[] {ServeCommand.DEMO_MODEL_NAME, "upper", "reverse"}) {
            String prompt = "input: red apple stone blue\noutput:";
            JsonNode expected = complete(whole, model, prompt);
            JsonNode actual = complete(sharded, model, prompt);
            assertThat(expected.get("text").asText()).as(model + " generates something").isNotEmpty();
            assertThat(actual.get("text").asText()).as(model).isEqualTo(expected.get("text").asText());
            assertThat(actual.get("logprobs").get("tokens")).as(model).isEqualTo(expected.get("logprobs").get("tokens"));
            JsonNode pa = actual.get("logprobs").get("token_logprobs");
            JsonNode pe = expected.get("logprobs").get("token_logprobs");
            for (int i = 0; i < pe.size(); i++) {
                assertThat(pa.get(i).asDouble()).as(model + " logprob " + i).isCloseTo(pe.get(i).asDouble(),
                        org.assertj.core.data.Offset.offset(2e-3));
            }
        }
    }
}
