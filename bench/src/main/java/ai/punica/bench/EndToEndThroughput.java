package ai.punica.bench;

import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.DirectoryAdapterSource;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * End-to-end generation throughput of one engine: {@code concurrency} requests at a time, adapters
 * assigned round-robin over the base model and every adapter found (the Punica "Distinct" mix), each
 * generating {@code tokens} tokens with ignore_eos so every request does the same work.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
 *   -cp "bench/target/punica-bench-0.1.0-SNAPSHOT.jar:bench/target/lib/*" ai.punica.bench.EndToEndThroughput \
 *   fixtures/model fixtures/adapters cpu 1,16 64 3
 * </pre>
 * Arguments: model dir, adapters dir, backend, concurrencies, tokens per request, rounds.
 */
public final class EndToEndThroughput {

    public static void main(String[] args) throws Exception {
        Path model = Path.of(args.length > 0 ? args[0] : "fixtures/model");
        Path adapterRoot = Path.of(args.length > 1 ? args[1] : "fixtures/adapters");
        String backend = args.length > 2 ? args[2] : "cpu";
        String[] concurrencies = (args.length > 3 ? args[3] : "1,16").split(",");
        int tokens = args.length > 4 ? Integer.parseInt(args[4]) : 64;
        int rounds = args.length > 5 ? Integer.parseInt(args[5]) : 3;

        Map<String, Path> adapterDirs = DirectoryAdapterSource.adaptersIn(adapterRoot);
        List<String> adapters = new ArrayList<>();
        adapters.add(null); // the base model takes its turn among the adapters
        adapters.addAll(adapterDirs.keySet());
        EngineBuilder builder = new EngineBuilder().model(model).backend(backend).adapters(adapterDirs)
                .config(EngineConfig.builder().maxBatchTokens(256).maxRunning(64).loraSlots(8).build());
        try (var runtime = builder.build()) {
            var engine = runtime.engine();
            int[] prompt = runtime.tokenizer().encode("input: red apple stone river\noutput:", true);
            System.out.printf(Locale.ROOT, "backend=%s model=%s adapters=%d tokens/request=%d prompt=%d tokens cores=%d%n",
                    runtime.backend().name(), model, adapters.size() - 1, tokens, prompt.length,
                    Runtime.getRuntime().availableProcessors());
            int id = 0;
            for (String c : concurrencies) {
                int concurrency = Integer.parseInt(c.trim());
                for (int round = 0; round <= rounds; round++) { // round 0 warms up
                    List<CompletableFuture<Completion>> futures = new ArrayList<>();
                    long start = System.nanoTime();
                    for (int i = 0; i < concurrency; i++) {
                        SamplingParams p = SamplingParams.builder().temperature(0).maxTokens(tokens).ignoreEos(true).build();
                        futures.add(engine.generate(new GenerationRequest("bench-" + id++,
                                adapters.get(id % adapters.size()), prompt, p)));
                    }
                    long generated = 0;
                    double ttftSum = 0;
                    for (var f : futures) {
                        Completion done = f.join();
                        generated += done.completionTokens();
                        ttftSum += (done.firstTokenNanos() - done.arrivalNanos()) / 1e6;
                    }
                    double seconds = (System.nanoTime() - start) / 1e9;
                    if (round > 0) {
                        System.out.printf(Locale.ROOT, "concurrency=%d round=%d generated=%d seconds=%.3f tokens/s=%.1f mean_ttft_ms=%.1f%n",
                                concurrency, round, generated, seconds, generated / seconds, ttftSum / concurrency);
                    }
                }
            }
        }
    }
}
