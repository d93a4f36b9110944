package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.punica.Fixtures;
import ai.punica.backend.Backends;
import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The server on the CUDA backend: every held-out line of every skill (5 × 200) sent over HTTP by 64
 * concurrent clients, raw completions and chat, all five models mixed in the engine's batches (so decode
 * steps run from CUDA graphs with several adapters at once). Each skill must score at least 95%.
 */
@Tag("gpu")
class ServerOnGpuTest {
    private static final double MIN_ACCURACY = 0.95;
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void heldOutAccuracyThroughTheServerOnTheGpu() throws Exception {
        assumeTrue(Backends.providers().stream().anyMatch(p -> p.name().equals("cuda") && p.available()),
                "no usable CUDA device");
        Map<String, Path> adapters = new LinkedHashMap<>();
        for (String name : TestServers.ADAPTERS) {
            adapters.put(name, Fixtures.adapter(name));
        }
        EngineBuilder.Runtime runtime = new EngineBuilder().model(Fixtures.model())
                .modelName(TestServers.BASE).backend("cuda").config(TestServers.config(4096)).adapters(adapters)
                .build();
        PunicaServer server = TestServers.start(runtime, b -> { });
        Http http = new Http(server, null);
        try (ExecutorService clients = Executors.newFixedThreadPool(64)) {
            record Job(String skill, EvalCase c, boolean chat, Future<String> answer) {
            }
            List<Job> jobs = new ArrayList<>();
            for (String skill : TestServers.SKILLS) {
                List<EvalCase> cases = TestServers.eval(skill, 200);
                for (int i = 0; i < cases.size(); i++) {
                    EvalCase c = cases.get(i);
                    boolean chat = i % 2 == 1;
                    jobs.add(new Job(skill, c, chat, clients.submit(() -> ask(http, skill, c, chat))));
                }
            }
            Map<String, int[]> scores = new LinkedHashMap<>();
            for (Job job : jobs) {
                String answer = job.answer().get();
                int[] s = scores.computeIfAbsent(job.skill(), k -> new int[2]);
                s[1]++;
                if (answer.trim().equals(job.c().expected())) {
                    s[0]++;
                }
            }
            for (Map.Entry<String, int[]> e : scores.entrySet()) {
                double accuracy = (double) e.getValue()[0] / e.getValue()[1];
                System.out.printf("CHECK held-out accuracy through the server on the GPU, %s: %.3f (%d lines)%n",
                        e.getKey(), accuracy, e.getValue()[1]);
                assertThat(accuracy).as(e.getKey()).isGreaterThanOrEqualTo(MIN_ACCURACY);
            }
            assertThat(runtime.engine().kvPagesUsed()).isZero();
        } finally {
            server.stop(Duration.ofSeconds(10));
            runtime.close();
        }
    }

    /** One request, raw completion or chat, greedy; returns the generated text. */
    private static String ask(Http http, String skill, EvalCase c, boolean chat) throws Exception {
        ObjectNode body = JSON.createObjectNode();
        body.put("model", TestServers.modelFor(skill));
        body.put("max_tokens", 32);
        body.put("temperature", 0.0);
        if (chat) {
            body.putArray("messages").addObject().put("role", "user").put("content", c.user());
        } else {
            body.put("prompt", c.prompt());
        }
        Http.Response r = http.post(chat ? "/v1/chat/completions" : "/v1/completions", JSON.writeValueAsString(body));
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        JsonNode choice = JSON.readTree(r.body()).get("choices").get(0);
        return chat ? choice.get("message").get("content").asText() : choice.get("text").asText();
    }
}
