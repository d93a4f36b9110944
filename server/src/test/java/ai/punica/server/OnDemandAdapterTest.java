package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.cluster.EngineCluster;
import ai.punica.cluster.PlacementPolicy;
import ai.punica.engine.EngineBuilder;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.AdapterOptions;
import ai.punica.lora.DirectoryAdapterSource;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.models.completions.CompletionCreateParams;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * On-demand adapters through the HTTP API: a request names an adapter directory under the adapter root that
 * nobody loaded, and gets its answer; concurrent requests for it cause one load; a broken one is a clear
 * 400 for each of its requests while other traffic goes on; a missing name is a 404 that costs one lookup.
 */
class OnDemandAdapterTest {
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
        copy(Fixtures.adapter("upper"), root.resolve("acme/shout"));
        copy(Fixtures.adapter("upper"), root.resolve("acme/twin"));
        copy(Fixtures.adapter("reverse"), root.resolve("backwards"));
        copy(Fixtures.adapter("sort"), root.resolve("cut"));
        Path weights = root.resolve("cut/adapter_model.safetensors");
        Files.write(weights, Arrays.copyOf(Files.readAllBytes(weights), 4096));
        copy(Fixtures.adapter("sort"), outside.resolve("secret"));
        Files.createSymbolicLink(root.resolve("link-out"), outside.resolve("secret"));
        Map<String, Path> registered = new LinkedHashMap<>();
        for (String name : TestServers.ADAPTERS) {
            registered.put(name, Fixtures.adapter(name));
        }
        runtime = new EngineBuilder().model(Fixtures.model()).modelName(TestServers.BASE).backend("cpu")
                .config(TestServers.config(1024)).adapters(registered)
                .adapterOptions(AdapterOptions.defaults().withSources(List.of(new DirectoryAdapterSource(root))))
                .build();
        server = TestServers.start(runtime, b -> { });
        http = new Http(server, null);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static void copy(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        for (String f : new String[] {"adapter_config.json", "adapter_model.safetensors"}) {
            Files.copy(from.resolve(f), to.resolve(f));
        }
    }

    private static Http.Response complete(String model, String prompt) throws IOException {
        return http.post("/v1/completions", """
                {"model":%s,"prompt":%s,"max_tokens":32,"temperature":0}"""
                .formatted(JSON.writeValueAsString(model), JSON.writeValueAsString(prompt)));
    }

    private static String text(Http.Response r) throws IOException {
        return JSON.readTree(r.bytes()).at("/choices/0/text").asText().trim();
    }

    @Test
    void anUnloadedAdapterUnderTheRootIsServedThroughTheOpenAiSdk() throws IOException {
        OpenAIClient client = OpenAIOkHttpClient.builder().baseUrl(server.baseUrl() + "/v1").apiKey("unused")
                .maxRetries(0).build();
        try {
            for (EvalCase c : TestServers.eval("upper", 3)) {
                var r = client.completions().create(CompletionCreateParams.builder().model("acme/shout")
                        .prompt(c.prompt()).maxTokens(32).temperature(0.0).build());
                assertThat(r.choices().getFirst().text().trim()).isEqualTo(c.expected());
                assertThat(r.model()).isEqualTo("acme/shout");
            }
            assertThat(client.models().list().data()).anyMatch(m -> m.id().equals("acme/shout"));
        } finally {
            client.close();
        }
        String metrics = http.get("/metrics").body();
        assertThat(metrics).containsPattern("punica:lora_load_seconds_count\\{stage=\"disk\"} [1-9]")
                .containsPattern("punica:lora_load_seconds_count\\{stage=\"device\"} [1-9]")
                .containsPattern("punica:lora_resolutions_total [1-9]");
    }

    @Test
    void concurrentRequestsForOneColdAdapterCauseOneLoad() throws Exception {
        AdapterManager adapters = runtime.adapters();
        long lookups = adapters.sourceLookupCount();
        long resolutions = adapters.resolutionCount();
        long diskLoads = adapters.hostLoadCount();
        EvalCase c = TestServers.eval("upper", 1).getFirst();
        CountDownLatch go = new CountDownLatch(1);
        List<Future<Http.Response>> answers = new ArrayList<>();
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < 12; i++) {
                answers.add(clients.submit(() -> {
                    go.await();
                    return complete("acme/twin", c.prompt());
                }));
            }
            go.countDown();
            for (Future<Http.Response> a : answers) {
                Http.Response r = a.get();
                assertThat(r.status()).as(r.body()).isEqualTo(200);
                assertThat(text(r)).isEqualTo(c.expected());
            }
        }
        assertThat(adapters.sourceLookupCount() - lookups).isEqualTo(1);
        assertThat(adapters.resolutionCount() - resolutions).isEqualTo(1);
        assertThat(adapters.hostLoadCount() - diskLoads).isEqualTo(1);
    }

    @Test
    void aCorruptedAdapterIsAClearErrorForEachRequestAndOthersAreUnaffected() throws Exception {
        EvalCase reverse = TestServers.eval("reverse", 1).getFirst();
        CountDownLatch go = new CountDownLatch(1);
        List<Future<Http.Response>> broken = new ArrayList<>();
        List<Future<Http.Response>> others = new ArrayList<>();
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < 6; i++) {
                String other = i % 2 == 0 ? "reverse" : "backwards";
                broken.add(clients.submit(() -> {
                    go.await();
                    return complete("cut", reverse.prompt());
                }));
                others.add(clients.submit(() -> {
                    go.await();
                    return complete(other, reverse.prompt());
                }));
            }
            go.countDown();
            for (Future<Http.Response> f : broken) {
                Http.Response r = f.get();
                assertThat(r.status()).isEqualTo(400);
                JsonNode error = JSON.readTree(r.bytes()).get("error");
                assertThat(error.get("type").asText()).isEqualTo("invalid_request_error");
                assertThat(error.get("param").asText()).isEqualTo("model");
                assertThat(error.get("message").asText()).startsWith("The adapter `cut` was found in directory ")
                        .contains("adapter_model.safetensors").contains("truncated");
                assertThat(r.body()).doesNotContain("at ai.punica"); // no stack trace
            }
            for (Future<Http.Response> f : others) {
                Http.Response r = f.get();
                assertThat(r.status()).as(r.body()).isEqualTo(200);
                assertThat(text(r)).isEqualTo(reverse.expected());
            }
        }
        assertThat(runtime.adapters().isRegistered("cut")).isFalse();
    }

    @Test
    void aMissingNameIs404AndLookedUpOnceNotPerRequest() throws IOException {
        long lookups = runtime.adapters().sourceLookupCount();
        for (int i = 0; i < 40; i++) {
            Http.Response r = complete("acme/nobody", "input: a\noutput:");
            assertThat(r.status()).isEqualTo(404);
            JsonNode error = JSON.readTree(r.bytes()).get("error");
            assertThat(error.get("code").asText()).isEqualTo("model_not_found");
            assertThat(error.get("message").asText()).isEqualTo("The model `acme/nobody` does not exist.");
        }
        assertThat(runtime.adapters().sourceLookupCount() - lookups).isEqualTo(1);
    }

    @Test
    void namesReachingOutsideTheRootAreNotFound() throws IOException {
        for (String name : List.of("../" + outside.getFileName() + "/secret", outside.resolve("secret").toString(),
                "link-out", "acme/../../x", ".", "acme/")) {
            Http.Response r = complete(name, "input: a\noutput:");
            assertThat(r.status()).as(name).isEqualTo(404);
        }
        assertThat(runtime.adapters().registered()).noneMatch(n -> n.contains("secret") || n.contains("link"));
    }

    @Test
    void anOnDemandAdapterIsResolvedOnEachEngineOfAClusterThatServesIt() throws IOException {
        copy(Fixtures.adapter("upper"), root.resolve("spread/shout"));
        var options = AdapterOptions.defaults().withSources(List.of(new DirectoryAdapterSource(root)));
        List<EngineBuilder.Runtime> runtimes = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            runtimes.add(new EngineBuilder().model(Fixtures.model()).modelName(TestServers.BASE).backend("cpu")
                    .config(TestServers.config(1024)).adapterOptions(options).build());
        }
        EngineCluster cluster = EngineCluster.local(runtimes.stream().map(EngineBuilder.Runtime::engine).toList(),
                new EngineCluster.Config(new PlacementPolicy.RoundRobin(), 64, Duration.ofSeconds(60)));
        PunicaServer clustered = PunicaServer.builder().cluster(cluster).host("127.0.0.1").port(0).build().start();
        try {
            Http h = new Http(clustered, null);
            for (EvalCase c : TestServers.eval("upper", 4)) { // round-robin: two on each engine
                Http.Response r = h.post("/v1/completions", """
                        {"model":"spread/shout","prompt":%s,"max_tokens":32,"temperature":0}"""
                        .formatted(JSON.writeValueAsString(c.prompt())));
                assertThat(r.status()).isEqualTo(200);
                assertThat(text(r)).isEqualTo(c.expected());
            }
            for (EngineBuilder.Runtime r : runtimes) {
                assertThat(r.adapters().isRegistered("spread/shout")).isTrue();
                assertThat(r.adapters().resolutionCount()).isEqualTo(1);
            }
            assertThat(h.get("/metrics").body())
                    .containsPattern("punica:lora_resolutions_total\\{engine=\"0\"} 1")
                    .containsPattern("punica:lora_resolutions_total\\{engine=\"1\"} 1");
        } finally {
            clustered.stop(Duration.ofSeconds(5));
            cluster.close();
            runtimes.forEach(EngineBuilder.Runtime::close);
        }
    }
}
