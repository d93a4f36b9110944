package ai.punica.bench;

import ai.punica.cluster.EngineCluster;
import ai.punica.cluster.PlacementPolicy;
import ai.punica.engine.Completion;
import ai.punica.engine.Continuation;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.DirectoryAdapterSource;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * Migration on one device with two engines (docs/cluster.md): (1) correctness: requests on two engines with
 * small KV pools, placed by consolidate, migrate when an engine runs out of pages; each output must equal the
 * same request's run on one engine with room (greedy and seeded sampling); (2) cost: one migration, timed from
 * handing an engine a continuation to its next token, against the tokens it re-prefills.
 *
 * <pre>
 * bash .device-bundle/device-run bench ai.punica.bench.ClusterMigrationBench --backend cuda
 * (tools/bench/cluster_gpu.sh runs it and keeps the log; on a machine without a GPU: --backend cpu)
 * </pre>
 * Options: --backend cuda|cpu, --model DIR (default fixtures/model), --adapters DIR of adapter directories
 * (default fixtures/adapters), --requests 24, --gen 48, --kv-pages 24 (per engine, pages of 16 tokens),
 * --cost-tokens 16,64,256,512, --repeats 5.
 */
public final class ClusterMigrationBench {
    private ClusterMigrationBench() {
    }

    public static void main(String[] argv) throws Exception {
        BenchArgs args = BenchArgs.parse(argv);
        String backend = args.backend();
        Path model = Path.of(args.string("model", "fixtures/model"));
        Path adapterRoot = Path.of(args.string("adapters", "fixtures/adapters"));
        int requests = args.integer("requests", 24);
        int gen = args.integer("gen", 48);
        int kvPages = args.integer("kv-pages", 24);
        int repeats = args.integer("repeats", 5);
        int[] costTokens = args.integers("cost-tokens", "16,64,256,512");
        Map<String, Path> adapterDirs = DirectoryAdapterSource.adaptersIn(adapterRoot);
        List<String> adapters = List.copyOf(adapterDirs.keySet());
        EngineBuilder builder = new EngineBuilder().model(model).backend(backend).adapters(adapterDirs);
        EngineConfig roomyConfig = EngineConfig.builder().maxBatchTokens(512).maxRunning(64)
                .loraSlots(Math.max(1, adapters.size())).kvCacheBytes(256L << 20).build();
        try (var roomy = builder.config(roomyConfig).build()) {
            var c = roomy.modelConfig();
            long pageBytes = 16L * 2 * c.numLayers() * c.numKvHeads() * c.headDim() * roomy.backend().kvBytesPerElement();
            EngineConfig small = roomyConfig.toBuilder().maxBatchTokens(256).maxRunning(32)
                    .kvCacheBytes(kvPages * pageBytes).build();
            List<EngineBuilder.Runtime> two = new ArrayList<>();
            two.add(builder.config(small).device(0).build());
            two.add(builder.config(small).device(0).build());
            System.out.printf(Locale.ROOT, "backend %s, model %s, %d adapters; two engines on device 0 with %d KV pages"
                    + " of 16 tokens each; %d requests of %d tokens%n", roomy.backend().name(), model, adapters.size(),
                    kvPages, requests, gen);
            try {
                System.out.println();
                System.out.println("sampling | requests | migrations | preemptions | token mismatches | text mismatches");
                for (boolean sampled : List.of(false, true)) {
                    correctness(roomy, two, adapters, requests, gen, sampled);
                }
            } finally {
                two.forEach(EngineBuilder.Runtime::close);
            }
            System.out.println();
            System.out.println("tokens re-prefilled | migration ms (continuation handed over -> next token) "
                    + "| decode step ms | migration / step");
            for (int t : costTokens) {
                if (t + 4 >= roomy.engine().maxModelLen()) {
                    System.out.printf(Locale.ROOT, "%19d | skipped: the model's length is %d%n", t,
                            roomy.engine().maxModelLen());
                    continue;
                }
                cost(roomy.engine(), t, repeats);
            }
        }
    }

    private static void correctness(EngineBuilder.Runtime roomy, List<EngineBuilder.Runtime> two, List<String> adapters,
                                    int requests, int gen, boolean sampled) {
        List<GenerationRequest> list = new ArrayList<>();
        String[] words = {"red", "apple", "stone", "blue", "river", "cloud", "green", "tree"};
        for (int i = 0; i < requests; i++) {
            String prompt = "input: " + words[i % 8] + " " + words[(i * 3 + 1) % 8] + " " + words[(i * 5 + 2) % 8]
                    + "\noutput:";
            SamplingParams p = sampled
                    ? SamplingParams.builder().temperature(1.0f).topP(0.95f).seed(7000L + i).maxTokens(gen)
                            .ignoreEos(true).build()
                    : SamplingParams.builder().temperature(0).maxTokens(gen).ignoreEos(true).build();
            String adapter = adapters.isEmpty() || i % 3 == 0 ? null : adapters.get(i % adapters.size());
            list.add(new GenerationRequest((sampled ? "s" : "g") + i, adapter, roomy.tokenizer().encode(prompt, true), p));
        }
        List<Completion> expected = new ArrayList<>();
        for (GenerationRequest r : list) {
            expected.add(roomy.engine().generate(r).join());
        }
        try (EngineCluster cluster = EngineCluster.local(two.stream().map(EngineBuilder.Runtime::engine).toList(),
                new EngineCluster.Config(new PlacementPolicy.Consolidate(), 1024, Duration.ofSeconds(60)))) {
            List<CompletableFuture<Completion>> got = new ArrayList<>();
            for (GenerationRequest r : list) {
                CompletableFuture<Completion> f = new CompletableFuture<>();
                cluster.submit(r, listener(f, null));
                got.add(f);
            }
            int tokenMismatches = 0;
            int textMismatches = 0;
            int preemptions = 0;
            for (int i = 0; i < list.size(); i++) {
                Completion g = got.get(i).join();
                tokenMismatches += Arrays.equals(g.tokens(), expected.get(i).tokens()) ? 0 : 1;
                textMismatches += g.text().equals(expected.get(i).text()) ? 0 : 1;
                preemptions += g.preemptions();
            }
            long migrations = cluster.snapshot().migrations().get(EngineCluster.MigrationReason.KV_EXHAUSTED);
            System.out.printf(Locale.ROOT, "%-8s | %8d | %10d | %11d | %16d | %15d%n", sampled ? "seeded" : "greedy",
                    list.size(), migrations, preemptions, tokenMismatches, textMismatches);
        }
    }

    /** Median over {@code repeats} of: resume a continuation of {@code tokens} tokens -> its next token. */
    private static void cost(Engine engine, int tokens, int repeats) {
        double[] migrationMs = new double[repeats];
        double[] stepMs = new double[repeats];
        for (int k = 0; k < repeats; k++) {
            int[] prompt = new int[tokens - 4];
            for (int i = 0; i < prompt.length; i++) {
                prompt[i] = 3 + (i * 7 + k) % 200;
            }
            int[] generated = {10, 11, 12, 13};
            SamplingParams p = SamplingParams.builder().temperature(0).maxTokens(generated.length + 5).ignoreEos(true)
                    .build();
            long[] tokenNanos = new long[5];
            CompletableFuture<Completion> done = new CompletableFuture<>();
            long start = System.nanoTime();
            engine.resume(new Continuation("cost-" + tokens + "-" + k, null, prompt, generated, p, 1, 0, List.of()),
                    listener(done, tokenNanos));
            done.join();
            migrationMs[k] = (tokenNanos[0] - start) / 1e6;
            stepMs[k] = (tokenNanos[4] - tokenNanos[0]) / 4e6;
        }
        Arrays.sort(migrationMs);
        Arrays.sort(stepMs);
        double m = migrationMs[repeats / 2];
        double s = stepMs[repeats / 2];
        System.out.printf(Locale.ROOT, "%19d | %52.2f | %14.2f | %16.1f%n", tokens, m, s, m / s);
    }

    /** Completes {@code done}; records the arrival of the first tokens in {@code tokenNanos} when given. */
    private static GenerationListener listener(CompletableFuture<Completion> done, long[] tokenNanos) {
        int[] n = {0};
        return GenerationListener.completing(done, delta -> {
            if (tokenNanos != null && delta.token() >= 0 && n[0] < tokenNanos.length) {
                tokenNanos[n[0]++] = System.nanoTime();
            }
        });
    }
}
