package ai.punica.server;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The real engine on the CPU backend with the bundled fixture model and its four adapters, and a
 * server in front of it on 127.0.0.1 with an ephemeral port.
 */
final class TestServers {
    static final String BASE = "fixture-base";
    /** Eval sets: {@code copy} is the base model's skill, the rest are adapters of the same name. */
    static final List<String> ADAPTERS = List.of("upper", "reverse", "translate", "sort");
    static final List<String> SKILLS = List.of("copy", "upper", "reverse", "translate", "sort");

    private TestServers() {
    }

    /** Small sizes: the fixture model is ~5M parameters; 64 concurrent streams must fit one batch. */
    static EngineConfig config(int maxWaiting) {
        return new EngineConfig(256, 64, maxWaiting, 16, 32L << 20, 0, 4, 32, 256L << 20);
    }

    static EngineBuilder.Runtime engine() {
        return engine(config(1024));
    }

    static EngineBuilder.Runtime engine(EngineConfig config) {
        Map<String, Path> adapters = new LinkedHashMap<>();
        for (String name : ADAPTERS) {
            adapters.put(name, Fixtures.adapter(name));
        }
        return new EngineBuilder().model(Fixtures.model()).modelName(BASE).backend("cpu").config(config)
                .adapters(adapters).build();
    }

    static PunicaServer start(EngineBuilder.Runtime runtime, Consumer<PunicaServer.Builder> customize) {
        PunicaServer.Builder b = PunicaServer.builder().runtime(runtime).host("127.0.0.1").port(0);
        customize.accept(b);
        return b.build().start();
    }

    static String modelFor(String skill) {
        return "copy".equals(skill) ? BASE : skill;
    }

    /** A held-out line: the raw prompt, the chat user message, and the answer. */
    record EvalCase(String prompt, String user, String expected) {
    }

    static List<EvalCase> eval(String skill, int limit) {
        Path file = Fixtures.path("eval", skill + ".jsonl");
        ObjectMapper mapper = new ObjectMapper();
        List<EvalCase> out = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(file)) {
                if (line.isBlank() || out.size() >= limit) {
                    continue;
                }
                JsonNode n = mapper.readTree(line);
                out.add(new EvalCase(n.get("prompt").asText(), n.get("user").asText(), n.get("expected").asText()));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }
}
