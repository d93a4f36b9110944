package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** /metrics in vLLM's names after real traffic, and /v1/models in vLLM's shape. */
class MetricsAndModelsTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern SAMPLE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*\\})? (\\S+)$",
            Pattern.MULTILINE);
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;

    @BeforeAll
    static void start() throws Exception {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> b.modelRoot(Fixtures.model().toString()));
        http = new Http(server, null);
        for (String skill : TestServers.SKILLS) {
            EvalCase c = TestServers.eval(skill, 1).getFirst();
            Http.Response r = http.post("/v1/completions", """
                    {"model":%s,"prompt":%s,"max_tokens":32,"temperature":0,"stream":%s}"""
                    .formatted(JSON.writeValueAsString(TestServers.modelFor(skill)),
                            JSON.writeValueAsString(c.prompt()), skill.length() % 2 == 0));
            assertThat(r.status()).isEqualTo(200);
        }
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    /** name{labels} → value, for every sample line. */
    private static Map<String, Double> scrape() {
        Http.Response r = http.get("/metrics");
        assertThat(r.status()).isEqualTo(200);
        assertThat(r.contentType()).startsWith("text/plain; version=0.0.4");
        Map<String, Double> out = new HashMap<>();
        Matcher m = SAMPLE.matcher(r.body());
        while (m.find()) {
            out.put(m.group(1) + (m.group(2) == null ? "" : m.group(2)), Double.parseDouble(m.group(3)));
        }
        return out;
    }

    @Test
    void metricsUseVllmNamesWithSaneValues() {
        Map<String, Double> m = scrape();
        String model = "{model_name=\"" + TestServers.BASE + "\"}";
        assertThat(m).containsEntry("vllm:num_requests_running" + model, 0.0);
        assertThat(m).containsEntry("vllm:num_requests_waiting" + model, 0.0);
        assertThat(m).containsEntry("vllm:kv_cache_usage_perc" + model, 0.0);
        assertThat(m.get("vllm:prompt_tokens_total" + model)).isGreaterThan(5 * 8.0);
        assertThat(m.get("vllm:generation_tokens_total" + model)).isGreaterThanOrEqualTo(5 * 4.0);
        assertThat(m).containsEntry("vllm:request_success_total{finished_reason=\"stop\",model_name=\""
                + TestServers.BASE + "\"}", 5.0);
        for (String h : new String[] {"vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                "vllm:time_per_output_token_seconds", "vllm:inter_token_latency_seconds"}) {
            assertThat(m.get(h + "_count" + model)).as(h).isGreaterThanOrEqualTo(5.0);
            assertThat(m.get(h + "_sum" + model)).as(h).isPositive().isLessThan(600.0);
            assertThat(m.get(h + "_bucket{model_name=\"" + TestServers.BASE + "\",le=\"+Inf\"}")).as(h)
                    .isEqualTo(m.get(h + "_count" + model));
        }
        assertThat(m.get("punica_adapter_loads_total")).isGreaterThanOrEqualTo(4.0);
        assertThat(m).containsKey("punica_adapter_evictions_total");
        // The CPU backend has no page-locked memory: the counters exist, at zero (on a GPU, CudaPinnedAdapterTest
        // checks the counts behind them).
        assertThat(m.get("punica:pinned_host_allocations_total")).isZero();
        assertThat(m.get("punica:pinned_host_reuses_total")).isZero();
        String lora = m.keySet().stream().filter(k -> k.startsWith("vllm:lora_requests_info{")).findFirst().orElseThrow();
        assertThat(lora).isEqualTo("vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"\","
                + "waiting_lora_adapters=\"\"}");
        assertThat(m.get(lora)).isCloseTo(System.currentTimeMillis() / 1000.0, org.assertj.core.data.Offset.offset(60.0));
    }

    @Test
    void modelsListTheBaseAndAdaptersWithTheirParent() throws Exception {
        Http.Response r = http.get("/v1/models");
        assertThat(r.status()).isEqualTo(200);
        JsonNode body = JSON.readTree(r.bytes());
        assertThat(body.get("object").asText()).isEqualTo("list");
        JsonNode data = body.get("data");
        assertThat(data).hasSize(5);
        JsonNode base = data.get(0);
        assertThat(base.get("id").asText()).isEqualTo(TestServers.BASE);
        assertThat(base.get("object").asText()).isEqualTo("model");
        assertThat(base.get("owned_by").asText()).isEqualTo("punica");
        assertThat(base.get("root").asText()).isEqualTo(Fixtures.model().toString());
        assertThat(base.get("parent").isNull()).isTrue();
        assertThat(base.get("max_model_len").asInt()).isEqualTo(1024);
        for (int i = 1; i < 5; i++) {
            JsonNode a = data.get(i);
            assertThat(a.get("parent").asText()).isEqualTo(TestServers.BASE);
            assertThat(a.get("root").asText()).isEqualTo(Fixtures.adapter(a.get("id").asText()).toString());
            assertThat(a.get("created").asLong()).isEqualTo(base.get("created").asLong());
        }
    }
}
