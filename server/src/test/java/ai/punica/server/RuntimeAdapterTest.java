package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/** vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter, under traffic for the other adapters. */
class RuntimeAdapterTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    static Path root;
    @TempDir
    static Path outside;

    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;

    @BeforeAll
    static void start() throws IOException {
        copyDir(Fixtures.adapter("upper"), root.resolve("shout"));
        copyDir(Fixtures.adapter("sort"), outside.resolve("secret"));
        Files.createSymbolicLink(root.resolve("link-out"), outside.resolve("secret"));
        Files.createDirectories(root.resolve("broken"));
        Files.writeString(root.resolve("broken/adapter_config.json"), "{\"r\": \"not a number\"}");
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> b.adapterRoot(root));
        http = new Http(server, null);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static void copyDir(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (var files = Files.list(from)) {
            for (Path f : files.toList()) {
                Files.copy(f, to.resolve(f.getFileName()));
            }
        }
    }

    private static String complete(String model, String prompt) throws Exception {
        Http.Response r = http.post("/v1/completions", """
                {"model":%s,"prompt":%s,"max_tokens":32,"temperature":0}"""
                .formatted(JSON.writeValueAsString(model), JSON.writeValueAsString(prompt)));
        if (r.status() != 200) {
            return "HTTP " + r.status() + ": " + r.body();
        }
        return JSON.readTree(r.bytes()).at("/choices/0/text").asText().trim();
    }

    @Test
    void loadAndUnloadWhileOtherAdaptersServeTraffic() throws Exception {
        List<String> others = List.of("copy", "reverse", "translate", "sort");
        AtomicBoolean running = new AtomicBoolean(true);
        Queue<String> failures = new ConcurrentLinkedQueue<>();
        AtomicInteger served = new AtomicInteger();
        try (ExecutorService traffic = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int t = 0; t < 4; t++) {
                String skill = others.get(t);
                List<EvalCase> cases = TestServers.eval(skill, 5);
                traffic.submit(() -> {
                    for (int i = 0; running.get() && i < 200; i++) {
                        EvalCase c = cases.get(i % cases.size());
                        String got = complete(TestServers.modelFor(skill), c.prompt());
                        if (!got.equals(c.expected())) {
                            failures.add(skill + ": " + got);
                        }
                        served.incrementAndGet();
                    }
                    return null;
                });
            }

            Http.Response load = http.post("/v1/load_lora_adapter", "{\"lora_name\":\"shout\",\"lora_path\":"
                    + JSON.writeValueAsString(root.resolve("shout").toString()) + "}");
            assertThat(load.status()).as(load.body()).isEqualTo(200);
            assertThat(load.body()).isEqualTo("Success: LoRA adapter 'shout' added successfully.");
            assertThat(modelIds()).contains("shout");

            for (EvalCase c : TestServers.eval("upper", 5)) {
                assertThat(complete("shout", c.prompt())).isEqualTo(c.expected());
            }

            Http.Response again = http.post("/v1/load_lora_adapter",
                    "{\"lora_name\":\"shout\",\"lora_path\":\"shout\"}");
            assertThat(again.status()).isEqualTo(400);
            assertThat(again.body()).contains("The lora adapter 'shout' has already been loaded.");

            Http.Response unload = http.post("/v1/unload_lora_adapter", "{\"lora_name\":\"shout\"}");
            assertThat(unload.status()).as(unload.body()).isEqualTo(200);
            assertThat(unload.body()).isEqualTo("Success: LoRA adapter 'shout' removed successfully.");
            assertThat(modelIds()).doesNotContain("shout");

            String after = complete("shout", TestServers.eval("upper", 1).getFirst().prompt());
            assertThat(after).startsWith("HTTP 404").contains("The model `shout` does not exist.");

            // A relative path is resolved under the root; the name is free again after unloading.
            Http.Response reload = http.post("/v1/load_lora_adapter", "{\"lora_name\":\"shout\",\"lora_path\":\"shout\"}");
            assertThat(reload.status()).as(reload.body()).isEqualTo(200);
            EvalCase c = TestServers.eval("upper", 1).getFirst();
            assertThat(complete("shout", c.prompt())).isEqualTo(c.expected());

            Thread.sleep(200);
            running.set(false);
        }
        assertThat(failures).isEmpty();
        assertThat(served.get()).isGreaterThan(8);
    }

    /**
     * One running slot, held by a long base-model request; a request for a runtime adapter waits behind
     * it; the adapter is unloaded; the long request's client leaves. The waiting request, streaming or
     * not, is then answered as a request for an unknown model: 404, the same message.
     */
    @ParameterizedTest(name = "stream={0}")
    @ValueSource(booleans = {false, true})
    void aQueuedRequestWhoseAdapterIsUnloadedIs404(boolean stream) throws Exception {
        var config = new ai.punica.engine.EngineConfig(256, 1, 1024, 16, 32L << 20, 0, 4, 32, 256L << 20);
        try (var oneSlot = TestServers.engine(config)) {
            PunicaServer s = TestServers.start(oneSlot, b -> b.adapterRoot(root));
            try {
                Http client = new Http(s, null);
                assertThat(client.post("/v1/load_lora_adapter", "{\"lora_name\":\"late\",\"lora_path\":\"shout\"}")
                        .status()).isEqualTo(200);
                java.net.Socket holder = Http.openStreamAndReadFirstFrame(s, "/v1/completions", "{\"prompt\":\"input: "
                        + "red\\noutput:\",\"max_tokens\":900,\"ignore_eos\":true,\"stream\":true}");
                var waiting = java.util.concurrent.CompletableFuture.supplyAsync(() -> client.post("/v1/chat/completions",
                        "{\"model\":\"late\",\"stream\":" + stream + ",\"messages\":[{\"role\":\"user\",\"content\":"
                                + "\"input: red apple stone\"}]}"));
                long end = System.nanoTime() + Duration.ofSeconds(10).toNanos();
                while (oneSlot.engine().stats().waiting() == 0 && System.nanoTime() < end) {
                    Thread.sleep(10);
                }
                assertThat(oneSlot.engine().stats().waiting()).isEqualTo(1);
                assertThat(client.post("/v1/unload_lora_adapter", "{\"lora_name\":\"late\"}").status()).isEqualTo(200);
                holder.close();
                Http.Response r = waiting.get(30, java.util.concurrent.TimeUnit.SECONDS);
                assertThat(r.status()).as(r.body()).isEqualTo(404);
                assertThat(r.contentType()).isEqualTo("application/json");
                assertThat(JSON.readTree(r.bytes()).at("/error/message").asText())
                        .isEqualTo("The model `late` does not exist.");
                assertThat(JSON.readTree(r.bytes()).at("/error/code").asText()).isEqualTo("model_not_found");
            } finally {
                s.stop(Duration.ofSeconds(1));
            }
        }
    }

    @Test
    void unloadingAnUnknownAdapterIs404() {
        Http.Response r = http.post("/v1/unload_lora_adapter", "{\"lora_name\":\"never-loaded\"}");
        assertThat(r.status()).isEqualTo(404);
        assertThat(r.body()).contains("The lora adapter 'never-loaded' cannot be found.");
    }

    @Test
    void adaptersOutsideTheRootsAreRefused() throws Exception {
        for (String path : List.of("../" + outside.getFileName() + "/secret", outside.resolve("secret").toString(),
                root.resolve("shout/../../" + outside.getFileName() + "/secret").toString(), "link-out", "/etc")) {
            Http.Response r = http.post("/v1/load_lora_adapter", "{\"lora_name\":\"escape\",\"lora_path\":"
                    + JSON.writeValueAsString(path) + "}");
            assertThat(r.status()).as(path).isEqualTo(400);
            JsonNode error = JSON.readTree(r.bytes()).get("error");
            assertThat(error.get("param").asText()).isEqualTo("lora_path");
            assertThat(error.get("message").asText()).as(path).contains("outside the adapter roots");
        }
        assertThat(modelIds()).doesNotContain("escape");
    }

    @Test
    void invalidAdapterFilesAre400WithTheReason() throws Exception {
        Http.Response r = http.post("/v1/load_lora_adapter", "{\"lora_name\":\"broken\",\"lora_path\":\"broken\"}");
        assertThat(r.status()).isEqualTo(400);
        assertThat(JSON.readTree(r.bytes()).at("/error/message").asText()).startsWith("Cannot load adapter 'broken'");
        Http.Response missing = http.post("/v1/load_lora_adapter", "{\"lora_name\":\"x\",\"lora_path\":\"nothing-here\"}");
        assertThat(missing.status()).isEqualTo(400);
        assertThat(missing.body()).contains("does not exist under the adapter roots");
    }

    private static List<String> modelIds() throws IOException {
        JsonNode models = JSON.readTree(http.get("/v1/models").bytes());
        return models.get("data").findValuesAsText("id");
    }
}
