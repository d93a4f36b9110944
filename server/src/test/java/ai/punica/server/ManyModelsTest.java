package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.EngineBuilder;
import ai.punica.lora.RandomFixtureAdapters;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** /v1/models lists 10,000 registered adapters, each once, with its parent and root. */
class ManyModelsTest {
    private static final int ADAPTERS = 10_000;

    @Test
    void modelsListsTenThousandAdapters(@TempDir Path tmp) throws Exception {
        Path dir = RandomFixtureAdapters.write(tmp.resolve("one"), 7);
        try (EngineBuilder.Runtime runtime = TestServers.engine()) {
            long start = System.nanoTime();
            for (int i = 0; i < ADAPTERS; i++) {
                runtime.adapters().register("org%d/adapter-%05d".formatted(i % 10, i), dir);
            }
            System.out.printf("registered %d adapters in %d ms%n", ADAPTERS, (System.nanoTime() - start) / 1_000_000);
            PunicaServer server = TestServers.start(runtime, b -> { });
            try {
                Http http = new Http(server, null);
                long[] nanos = new long[10];
                JsonNode models = null;
                for (int i = 0; i < nanos.length; i++) {
                    long t0 = System.nanoTime();
                    Http.Response r = http.get("/v1/models");
                    nanos[i] = System.nanoTime() - t0;
                    assertThat(r.status()).isEqualTo(200);
                    models = new ObjectMapper().readTree(r.bytes());
                }
                Arrays.sort(nanos);
                System.out.printf("/v1/models with %d adapters: median %.1f ms, %d bytes%n", ADAPTERS,
                        nanos[nanos.length / 2] / 1e6, http.get("/v1/models").bytes().length);
                JsonNode data = models.get("data");
                assertThat(data).hasSize(TestServers.ADAPTERS.size() + ADAPTERS + 1);
                long ours = 0;
                for (JsonNode card : data) {
                    if (card.get("id").asText().startsWith("org")) {
                        ours++;
                        assertThat(card.get("parent").asText()).isEqualTo(TestServers.BASE);
                        assertThat(card.get("root").asText()).isEqualTo(dir.toString());
                    }
                }
                assertThat(ours).isEqualTo(ADAPTERS);
            } finally {
                server.stop(Duration.ofSeconds(5));
            }
        }
    }
}
