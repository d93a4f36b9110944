package ai.punica.bench;

import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.backend.PinnedHostMemory;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import ai.punica.engine.Completion;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.AdapterOptions;
import ai.punica.lora.LoraAdapter;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Adapters at scale on one device (issue 13): how long a cold adapter takes to load, stage by stage, and what
 * the number of device slots does to throughput when requests spread over many adapters.
 *
 * <ol>
 *   <li><b>disk</b>: {@link LoraAdapter#load} of one adapter (files → validated copy in host memory), with the
 *       page cache warm (every file read once first), {@code --cold-loads} times over the distinct files: into
 *       the backend's pinned memory (CUDA: page-locked, in the device layout), then into ordinary memory;</li>
 *   <li><b>host → device</b>: {@link Backend#loadWeightsAsync} of one adapter already in host memory, spun on
 *       {@link WeightUpload#isDone} until it completes, alone (no steps running), {@code --cold-loads} times:
 *       from pinned memory (one direct copy), then from ordinary memory (through the staging buffers);
 *       Punica (MLSys'24 §5) loads a rank-16 Llama-2-7B adapter in about 2 ms; each upload is followed by a second
 *       one of the same host block ("again": the CPU has not written it since the copy engine last read it);</li>
 *   <li><b>throughput</b>: for each slot count in {@code --slots}, an engine with {@code --names} registered
 *       adapters (names over {@code --write-adapters} distinct files, round robin: the disk holds a few
 *       80 MB adapters, the registry a thousand names, each loaded on its own) serves {@code --requests}
 *       requests submitted together, each naming one adapter: <i>skewed</i> (Zipf 1.5 over the names, as
 *       Punica's skewed workload) or <i>distinct</i> (a different name per request).</li>
 * </ol>
 * {@code tools/bench/adapters_gpu.sh} runs it on the GPU machine. Options: --backend cuda --shape llama7b
 * --adapters DIR --write-adapters 16 --rank 16 --names 1000 --cold-loads 100 --slots 32,128
 * --workloads skewed,distinct --requests 256 --prompt-len 64 --gen-len 32 --max-running 128
 * --host-gib 24 --seed 1 --out FILE.csv (--cold-only true: stop after the load latencies). A CPU run at toy size:
 * {@code --backend cpu --shape tiny --adapters /tmp/tiny-adapters --write-adapters 4 --names 40 --slots 4,8
 * --requests 24 --gen-len 4}.
 */
public final class AdapterLoadBench {

    private AdapterLoadBench() {
    }

    public static void main(String[] argv) throws IOException {
        BenchArgs args = BenchArgs.parse(argv);
        String backendName = args.backend();
        ModelConfig config = DecodeStepBench.modelConfig(args.shape());
        Path root = Path.of(args.string("adapters", "/tmp/punica-adapters-13"));
        int files = args.integer("write-adapters", 16);
        int rank = args.integer("rank", 16);
        int names = args.integer("names", 1000);
        int coldLoads = args.integer("cold-loads", 100);
        int[] slotCounts = args.integers("slots", "32,128");
        List<String> workloads = args.strings("workloads", "skewed,distinct");
        int requests = args.integer("requests", 256);
        int promptLen = args.integer("prompt-len", 64);
        int genLen = args.integer("gen-len", 32);
        int maxRunning = args.integer("max-running", 128);
        long hostBytes = (long) (args.real("host-gib", 24) * (1L << 30));
        long seed = args.seed();
        Path out = args.out();

        long t0 = System.nanoTime();
        List<Path> dirs = new ArrayList<>(RandomAdapters.allProjections(rank).write(config, root, "a", files, files, seed));
        for (Path d : dirs) { // warm the page cache
            Files.readAllBytes(d.resolve(LoraAdapter.WEIGHTS_FILE));
        }
        System.out.printf(Locale.ROOT, "wrote %d rank-%d adapters (all seven projections) to %s in %.1f s%n", files,
                rank, root, (System.nanoTime() - t0) / 1e9);

        List<String> csv = new ArrayList<>();
        csv.add("part,case,slots,count,p50_ms,p90_ms,p99_ms,max_ms,mean_ms,mb,tokens_per_s,wall_s,slot_loads,"
                + "host_loads");
        try (Backend backend = Backends.create(backendName)) {
            // 1 and 2: the two load stages alone, through the backend's pinned memory (one direct copy per
            // upload) where it has some, then through ordinary memory and the staging buffers, for comparison.
            PinnedHostMemory pinned = backend.pinnedHostMemory().orElse(null);
            double mb;
            try (LoraAdapter first = LoraAdapter.load("probe", dirs.getFirst(), config, pinned)) {
                mb = first.sizeBytes() / 1e6;
            }
            System.out.printf(Locale.ROOT, "adapter of %.1f MB, %d loads per path (first one included):%n", mb, coldLoads);
            for (boolean viaPinned : pinned == null ? new boolean[] {false} : new boolean[] {true, false}) {
                long[] disk = new long[coldLoads];
                long[] device = new long[coldLoads];
                long[] again = new long[coldLoads];
                long[] enqueue = new long[coldLoads];
                int pinnedLoads = 0;
                for (int i = 0; i < coldLoads; i++) {
                    Path dir = dirs.get(i % dirs.size());
                    long start = System.nanoTime();
                    LoraAdapter adapter = LoraAdapter.load("cold" + i, dir, config, viaPinned ? pinned : null);
                    disk[i] = System.nanoTime() - start;
                    pinnedLoads += adapter.pinned() ? 1 : 0;
                    List<TensorData> weights = adapter.weightsInSlotOrder();
                    start = System.nanoTime();
                    device[i] = upload(backend, weights, start, enqueue, i);
                    // The same host block once more, now that the CPU has not written it since the last copy.
                    again[i] = upload(backend, weights, System.nanoTime(), null, i);
                    adapter.close();
                }
                // The engine's path keeps the rows' old names; the comparison path gets its own.
                boolean comparison = pinned != null && !viaPinned;
                csv.add(stageRow(comparison ? "disk_pageable" : "disk", disk, mb));
                csv.add(stageRow(comparison ? "host_to_device_staged" : "host_to_device", device, mb));
                csv.add(stageRow(comparison ? "host_to_device_staged_again" : "host_to_device_again", again, mb));
                csv.add(stageRow(comparison ? "host_to_device_staged_enqueue" : "host_to_device_enqueue", enqueue, mb));
                System.out.println(viaPinned
                        ? String.format(Locale.ROOT, "  pinned host memory (%d of %d loads got a page-locked block):",
                                pinnedLoads, coldLoads)
                        : "  ordinary host memory:");
                System.out.println("    " + summary("disk (warm page cache) -> host", disk, mb));
                System.out.println("    " + summary(viaPinned ? "host -> device (direct, alone)"
                        : comparison ? "host -> device (staged, alone)" : "host -> device (alone)", device, mb));
                System.out.println("    " + summary("the same block again", again, mb));
                System.out.println("    " + summary("of the first: until enqueued", enqueue, mb));
            }
            write(out, csv);
            if (args.has("cold-only")) {
                return;
            }

            // 3: throughput against the number of device slots.
            System.out.println();
            System.out.println("workload  slots requests adapters |  wall s  tokens/s | TTFT p50 ms  p99 ms | slot loads"
                    + "  host loads");
            for (int slots : slotCounts) {
                int running = Math.min(maxRunning, requests);
                int batchTokens = Math.max(running, 2048);
                int pageSize = 16;
                int pages = running * ((promptLen + genLen + pageSize - 1) / pageSize + 1) * 11 / 10;
                long bytesPerPage = 2L * config.numLayers() * config.numKvHeads() * config.headDim()
                        * backend.kvBytesPerElement() * pageSize;
                EngineConfig engineConfig = new EngineConfig(batchTokens, running, Math.max(1024, requests), pageSize,
                        pages * bytesPerPage, 0, slots, rank, hostBytes);
                LlamaModel model = LlamaModel.load(config, new RandomWeights(config, seed), backend, batchTokens,
                        running, slots, rank);
                ExecutorService loader = Executors.newVirtualThreadPerTaskExecutor();
                AdapterManager adapters = new AdapterManager(model, hostBytes, loader, AdapterOptions.defaults());
                for (int n = 0; n < names; n++) {
                    adapters.register(String.format(Locale.ROOT, "n%04d", n), dirs.get(n % dirs.size()));
                }
                Engine engine = new Engine("bench", model, GenerateThroughputBench.idTokenizer(config.vocabSize()),
                        adapters, engineConfig, config.eosTokenIds().stream().mapToInt(Integer::intValue).toArray());
                try {
                    // Warm-up (not timed): JIT, CUDA graphs of the batch sizes, the loader threads.
                    serve(engine, "distinct", Math.min(requests, 2 * slots), names, promptLen, Math.min(genLen, 4),
                            seed + 1);
                    for (String workload : workloads) {
                        long slotLoads = adapters.loadCount();
                        long hostLoads = adapters.hostLoadCount();
                        Throughput r = serve(engine, workload, requests, names, promptLen, genLen, seed);
                        csv.add(String.format(Locale.ROOT, "throughput,%s,%d,%d,%.3f,,%.3f,,,%.1f,%.1f,%.3f,%d,%d",
                                workload, slots, requests, r.ttftP50Ms, r.ttftP99Ms, mb, r.tokensPerSecond(),
                                r.wallSeconds, adapters.loadCount() - slotLoads, adapters.hostLoadCount() - hostLoads));
                        System.out.printf(Locale.ROOT, "%-9s %5d %8d %8d | %7.2f %9.1f | %11.1f %7.1f | %10d %11d%n",
                                workload, slots, requests, r.adapters, r.wallSeconds, r.tokensPerSecond(), r.ttftP50Ms,
                                r.ttftP99Ms, adapters.loadCount() - slotLoads, adapters.hostLoadCount() - hostLoads);
                        write(out, csv);
                    }
                } finally {
                    engine.close();
                    adapters.close();
                    loader.shutdownNow();
                    model.close();
                }
            }
        }
    }

    record Throughput(double wallSeconds, long tokens, int adapters, double ttftP50Ms, double ttftP99Ms) {
        double tokensPerSecond() {
            return tokens / wallSeconds;
        }
    }

    /** Submits every request at once (from the engine thread, between two steps) and waits for all. */
    private static Throughput serve(Engine engine, String workload, int requests, int names, int promptLen, int genLen,
                                    long seed) {
        SplittableRandom random = new SplittableRandom(seed * 31 + workload.hashCode());
        double[] zipf = new double[names];
        double sum = 0;
        for (int k = 0; k < names; k++) {
            sum += Math.pow(k + 1, -1.5);
            zipf[k] = sum;
        }
        SamplingParams params = SamplingParams.builder().temperature(0).maxTokens(genLen).ignoreEos(true).build();
        List<GenerationRequest> batch = new ArrayList<>();
        java.util.Set<String> used = new java.util.HashSet<>();
        for (int i = 0; i < requests; i++) {
            int n = switch (workload) {
                case "distinct" -> i % names;
                case "skewed" -> {
                    int k = Arrays.binarySearch(zipf, random.nextDouble() * sum);
                    yield Math.min(k >= 0 ? k : -k - 1, names - 1);
                }
                default -> throw new IllegalArgumentException("workload " + workload + ": use skewed or distinct");
            };
            String name = String.format(Locale.ROOT, "n%04d", n);
            used.add(name);
            batch.add(new GenerationRequest(workload + "-" + i, name,
                    random.ints(promptLen, 1, engine.tokenizer().vocabSize()).toArray(), params));
        }
        List<CompletableFuture<Completion>> futures = new ArrayList<>();
        long start = System.nanoTime();
        engine.callOnEngineThread(() -> {
            batch.forEach(r -> futures.add(engine.generate(r)));
            return null;
        });
        List<Completion> done = futures.stream().map(CompletableFuture::join).toList();
        long end = done.stream().mapToLong(Completion::finishNanos).max().orElse(start);
        long[] ttft = done.stream().mapToLong(c -> c.firstTokenNanos() - c.arrivalNanos()).sorted().toArray();
        long tokens = done.stream().mapToLong(Completion::completionTokens).sum();
        return new Throughput((end - start) / 1e9, tokens, used.size(), percentile(ttft, 0.5) / 1e6,
                percentile(ttft, 0.99) / 1e6);
    }

    /**
     * Nanoseconds from {@code start} until {@code weights}' upload is done (spinning on {@code isDone}); with
     * {@code enqueue}, its element {@code i} gets the nanoseconds until {@code loadWeightsAsync} returned.
     */
    private static long upload(Backend backend, List<TensorData> weights, long start, long[] enqueue, int i) {
        try (WeightUpload upload = backend.loadWeightsAsync(weights)) {
            if (enqueue != null) {
                enqueue[i] = System.nanoTime() - start; // until loadWeightsAsync returned: the host's part
            }
            while (!upload.isDone()) {
                Thread.onSpinWait();
            }
            return System.nanoTime() - start;
        }
    }

    private static String stageRow(String stage, long[] nanos, double mb) {
        long[] s = nanos.clone();
        Arrays.sort(s);
        return String.format(Locale.ROOT, "load,%s,,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f,,,,", stage, s.length,
                percentile(s, 0.5) / 1e6, percentile(s, 0.9) / 1e6, percentile(s, 0.99) / 1e6, s[s.length - 1] / 1e6,
                Arrays.stream(s).average().orElse(0) / 1e6, mb);
    }

    private static String summary(String what, long[] nanos, double mb) {
        long[] s = nanos.clone();
        Arrays.sort(s);
        double p50 = percentile(s, 0.5) / 1e6;
        return String.format(Locale.ROOT, "%-32s p50 %7.2f ms  p90 %7.2f  p99 %7.2f  max %7.2f  (%.1f GB/s at p50)",
                what, p50, percentile(s, 0.9) / 1e6, percentile(s, 0.99) / 1e6, s[s.length - 1] / 1e6, mb / p50);
    }

    private static double percentile(long[] sorted, double q) {
        return sorted[Math.min(sorted.length - 1, (int) Math.floor(q * sorted.length))];
    }

    private static void write(Path out, List<String> lines) throws IOException {
        if (out != null) {
            Files.write(out, lines);
        }
    }
}
