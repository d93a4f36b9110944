package ai.punica.bench;

import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.engine.Completion;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.EngineStats;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.DirectoryAdapterSource;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * End-to-end generation throughput of one {@link Engine} on a Llama-2-7B-shaped model (random bf16
 * weights made in memory, as in {@link DecodeStepBench}) with PEFT adapter directories registered in its
 * {@link AdapterManager}: the comparison with HF transformers + PEFT ({@code tools/bench/hf_generate.py})
 * asked for by the CUDA issue.
 *
 * <p>For each workload and batch size b, b requests are submitted together (from the engine thread
 * between two steps, so the next step sees all of them), each with a prompt of {@code prompt-len} random
 * token ids, greedy, ignore_eos, exactly {@code gen-len} new tokens. The engine schedules them as it would
 * any traffic; its step budget defaults to b·prompt-len tokens, so every prompt is prefilled in the first
 * step (as HF's generate prefills its batch in one forward), then one decode step per token follows. The
 * rows of adapter segment j use adapter j, segment lengths as Punica's {@code get_lora_lens} (MLSys'24
 * §7.1, {@link DecodeStepBench#segmentLengths}): distinct (b adapters), uniform (⌈√b⌉), skewed (Zipf 1.5),
 * identical (one), none (the base model). Measured from the submission: wall time until the last request
 * finishes, generated tokens ÷ wall time, time to first token (mean and max over requests), time per
 * output token ((finish − first token) ÷ (tokens − 1), mean over requests), engine steps and wall time ÷
 * steps. Before the timed cases every batch size runs once with short generations (adapters read from disk
 * into slots, JIT, any per-batch-size set-up); a timed case that still loaded an adapter, preempted a
 * request or fell short of its tokens says so in its row. Slots default to the most adapters a case needs,
 * so no timed case loads one.
 *
 * <p>Prompts are token ids; the engine's tokenizer is an in-memory one whose tokens are "t0", "t1", …
 * (its text output is not looked at).
 *
 * <p>The whole comparison is one device call, {@code tools/bench/e2e_run.sh}, which runs:
 * <pre>
 * python3 tools/bench/make_adapters.py --out /tmp/punica-adapters --count 64
 * bash .device-bundle/device-run bench ai.punica.bench.GenerateThroughputBench --backend cuda --shape llama7b \
 *   --adapters /tmp/punica-adapters --batches 8,16,32,64 --prompt-len 128 --gen-len 128 \
 *   --out $OUT/punica_generate.csv
 * python3 tools/bench/hf_generate.py --adapters /tmp/punica-adapters --out $OUT/hf_generate.csv ...
 * python3 tools/bench/hf_generate.py --compare $OUT/punica_generate.csv $OUT/hf_generate.csv
 * (options: --backend cuda|cpu --shape llama7b|tiny --batches 8,16,32,64 --workloads
 *  none,identical,uniform,skewed,distinct --prompt-len 128 --gen-len 128 --rounds 1 --warmup-gen-len 16
 *  --max-batch-tokens b·prompt-len --slots (adapters needed) --max-rank 16 --page-size 16 --seed 1
 *  --write-adapters N: first write N random rank-16 adapters into --adapters, for runs without Python;
 *  --batch-invariant true: the backend with fixed reduction orders, as under punica serve --batch-invariant)
 * </pre>
 * A CPU run at toy size: {@code --backend cpu --shape tiny --batches 2,4 --prompt-len 16 --gen-len 8
 * --adapters /tmp/tiny-adapters --write-adapters 4}.
 */
public final class GenerateThroughputBench {

    /** One timed case's outcome. */
    record Result(String workload, int batch, int adapters, int promptLen, int genLen, double wallSeconds,
                  long generatedTokens, double ttftMeanMs, double ttftMaxMs, double tpotMeanMs, long steps,
                  long adapterLoads, long preemptions) {

        double tokensPerSecond() {
            return generatedTokens / wallSeconds;
        }

        double stepMs() {
            return steps == 0 ? 0 : wallSeconds * 1e3 / steps;
        }

        static final String CSV_HEADER = "workload,batch,adapters,prompt_len,gen_len,wall_s,generated_tokens,"
                + "tokens_per_s,ttft_ms_mean,ttft_ms_max,tpot_ms_mean,steps,step_ms_mean,adapter_loads,preemptions";

        String csv() {
            return String.format(Locale.ROOT, "%s,%d,%d,%d,%d,%.4f,%d,%.1f,%.2f,%.2f,%.3f,%d,%.3f,%d,%d", workload,
                    batch, adapters, promptLen, genLen, wallSeconds, generatedTokens, tokensPerSecond(), ttftMeanMs,
                    ttftMaxMs, tpotMeanMs, steps, stepMs(), adapterLoads, preemptions);
        }

        String tableRow() {
            String note = (adapterLoads > 0 ? "  adapter loads: " + adapterLoads : "")
                    + (preemptions > 0 ? "  preemptions: " + preemptions : "")
                    + (generatedTokens != (long) batch * genLen ? "  tokens: " + generatedTokens + " of "
                    + (long) batch * genLen : "");
            return String.format(Locale.ROOT, "%-9s %5d %8d | %8.2f %10.1f | %8.1f %8.1f | %8.2f | %5d %8.2f%s",
                    workload, batch, adapters, wallSeconds, tokensPerSecond(), ttftMeanMs, ttftMaxMs, tpotMeanMs, steps,
                    stepMs(), note);
        }

        static final String TABLE_HEADER = "workload  batch adapters |   wall s   tokens/s |  TTFT ms  max ms | TPOT ms "
                + "| steps  step ms";
    }

    private GenerateThroughputBench() {
    }

    public static void main(String[] argv) throws IOException {
        BenchArgs args = BenchArgs.parse(argv);
        WorkloadSweep sweep = WorkloadSweep.read(args, "8,16,32,64");
        int[] batches = sweep.batches();
        int promptLen = args.integer("prompt-len", 128);
        int genLen = args.integer("gen-len", 128);
        int warmupGenLen = args.integer("warmup-gen-len", Math.min(16, genLen));
        int rounds = args.integer("rounds", 1);
        int maxBatch = sweep.maxBatch();
        int maxBatchTokens = args.integer("max-batch-tokens", Math.max(maxBatch, maxBatch * promptLen));
        int pageSize = args.integer("page-size", 16);
        int maxRank = args.integer("max-rank", 16);
        long seed = sweep.seed();
        Path adapterRoot = args.path("adapters");

        ModelConfig config = sweep.model();
        if (args.has("write-adapters")) {
            if (adapterRoot == null) {
                throw new IllegalArgumentException("--write-adapters needs --adapters DIR to write into");
            }
            long t0 = System.nanoTime();
            int n = args.integer("write-adapters", 0);
            RandomAdapters.allProjections(maxRank).write(config, adapterRoot, "a", n, n, seed);
            System.out.printf(Locale.ROOT, "wrote %d random adapters of rank %d to %s in %.1f s%n", n, maxRank,
                    adapterRoot, (System.nanoTime() - t0) / 1e9);
        }
        Map<String, Path> adapterDirs = adapterRoot != null ? DirectoryAdapterSource.adaptersIn(adapterRoot) : Map.of();
        List<String> adapterNames = List.copyOf(adapterDirs.keySet());
        int neededAdapters = sweep.maxAdapters();
        if (neededAdapters > adapterNames.size()) {
            throw new IllegalArgumentException("the workloads " + sweep.workloads() + " at batch sizes "
                    + Arrays.toString(batches) + " need " + neededAdapters + " adapters but "
                    + (adapterRoot == null ? "no --adapters DIR was given" : adapterRoot + " holds "
                    + adapterNames.size()) + "; write them with tools/bench/make_adapters.py --count " + neededAdapters
                    + " or --write-adapters " + neededAdapters);
        }
        int slots = args.integer("slots", Math.max(1, neededAdapters));

        boolean batchInvariant = args.bool("batch-invariant", false);
        try (Backend backend = batchInvariant ? Backends.provider(sweep.backend()).create(0, true)
                : Backends.create(sweep.backend())) {
            int pagesPerSeq = (promptLen + genLen + pageSize - 1) / pageSize;
            // Every request's pages at once (no preemption), plus the scheduler's 1 % watermark.
            int pages = maxBatch * pagesPerSeq + maxBatch + maxBatch * pagesPerSeq / 50;
            long bytesPerPage = 2L * config.numLayers() * config.numKvHeads() * config.headDim()
                    * backend.kvBytesPerElement() * pageSize;
            EngineConfig engineConfig = EngineConfig.builder().maxBatchTokens(maxBatchTokens).maxRunning(maxBatch)
                    .maxWaiting(Math.max(1024, 2 * maxBatch)).pageSize(pageSize).kvCacheBytes(pages * bytesPerPage)
                    .loraSlots(slots).maxLoraRank(maxRank).hostAdapterBytes(Long.MAX_VALUE).build();

            long t0 = System.nanoTime();
            LlamaModel model = LlamaModel.load(config, new RandomWeights(config, seed), backend, maxBatchTokens,
                    maxBatch, slots, maxRank);
            double loadSeconds = (System.nanoTime() - t0) / 1e9;
            ExecutorService loader = Executors.newVirtualThreadPerTaskExecutor();
            AdapterManager adapters = new AdapterManager(model, engineConfig.hostAdapterBytes(), loader);
            t0 = System.nanoTime();
            adapterDirs.forEach(adapters::register);
            double registerSeconds = (System.nanoTime() - t0) / 1e9;
            Engine engine = new Engine(sweep.shape(), model, idTokenizer(config.vocabSize()), adapters, engineConfig,
                    config.eosTokenIds().stream().mapToInt(Integer::intValue).toArray());
            try {
                System.out.printf(Locale.ROOT, "backend=%s shape=%s layers=%d hidden=%d vocab=%d; base weights in %.1f s;"
                                + " %d adapters registered in %.1f s; %d slots, %d KV pages of %d tokens (%.2f GB); "
                                + "step budget %d tokens; prompt %d, generate %d%n", backend.name()
                                + (batchInvariant ? " (batch-invariant)" : ""), sweep.shape(),
                        config.numLayers(), config.hiddenSize(), config.vocabSize(), loadSeconds, adapterNames.size(),
                        registerSeconds, slots, pages, pageSize, pages * bytesPerPage / 1e9, maxBatchTokens, promptLen,
                        genLen);

                String warmupWorkload = neededAdapters > 0 ? "distinct" : "none";
                t0 = System.nanoTime();
                for (int b : Arrays.stream(batches).sorted().toArray()) {
                    String w = warmupWorkload.equals("distinct") && DecodeStepBench.segmentLengths("distinct", b).length
                            > adapterNames.size() ? "identical" : warmupWorkload;
                    runCase(engine, w, b, promptLen, warmupGenLen, adapterNames, seed, 1 << 20);
                }
                System.out.printf(Locale.ROOT, "warm-up (%s, every batch size, %d tokens) in %.1f s; adapters loaded: %d%n",
                        warmupWorkload, warmupGenLen, (System.nanoTime() - t0) / 1e9, adapters.loadCount());

                System.out.println();
                System.out.println(Result.TABLE_HEADER);
                List<Result> results = new ArrayList<>();
                int caseId = 0;
                for (String workload : sweep.workloads()) {
                    for (int b : batches) {
                        List<Result> trials = new ArrayList<>();
                        for (int r = 0; r < rounds; r++) {
                            trials.add(runCase(engine, workload, b, promptLen, genLen, adapterNames, seed,
                                    ++caseId * 1000 + r));
                        }
                        trials.sort(Comparator.comparingDouble(Result::wallSeconds));
                        Result median = trials.get(trials.size() / 2);
                        results.add(median);
                        System.out.println(median.tableRow());
                        if (sweep.out() != null) { // after every case: a later failure keeps what was measured
                            List<String> lines = new ArrayList<>();
                            lines.add(Result.CSV_HEADER);
                            results.forEach(r -> lines.add(r.csv()));
                            Files.write(sweep.out(), lines);
                        }
                    }
                }
                System.out.println();
                System.out.println("SUMMARY (Punica-J end to end, backend " + backend.name() + ", prompt " + promptLen
                        + ", generate " + genLen + ")");
                System.out.println(Result.TABLE_HEADER);
                results.forEach(r -> System.out.println(r.tableRow()));
            } finally {
                engine.close();
                adapters.close();
                loader.shutdownNow();
                model.close();
            }
        }
    }

    /**
     * Submits {@code batch} requests at once, waits for all, and measures them. Request i gets a prompt of
     * random ids drawn from {@code seed} and {@code caseSeed}.
     */
    static Result runCase(Engine engine, String workload, int batch, int promptLen, int genLen,
                          List<String> adapterNames, long seed, long caseSeed) {
        int[] lens = DecodeStepBench.segmentLengths(workload, batch);
        String[] adapterOf = new String[batch];
        int row = 0;
        for (int segment = 0; segment < lens.length; segment++) {
            for (int i = 0; i < lens[segment]; i++) {
                adapterOf[row++] = workload.equals("none") ? null : adapterNames.get(segment);
            }
        }
        int vocab = engine.tokenizer().vocabSize(); // = the model's: see idTokenizer
        SplittableRandom random = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + caseSeed);
        SamplingParams params = SamplingParams.builder().temperature(0).maxTokens(genLen).ignoreEos(true).build();
        List<GenerationRequest> requests = new ArrayList<>(batch);
        for (int i = 0; i < batch; i++) {
            requests.add(new GenerationRequest("case" + caseSeed + "-" + i, adapterOf[i],
                    random.ints(promptLen, 1, vocab).toArray(), params));
        }
        EngineStats before = settledStats(engine);
        long loadsBefore = engine.adapters().loadCount();
        long[] submitted = new long[batch];
        List<CompletableFuture<Completion>> futures = new ArrayList<>(batch);
        long start = System.nanoTime();
        // Submitted from the engine thread between two steps: the engine admits every request before it
        // schedules again, so the first step sees all of them, as when they arrive together.
        engine.callOnEngineThread(() -> {
            for (int i = 0; i < batch; i++) {
                submitted[i] = System.nanoTime();
                futures.add(engine.generate(requests.get(i)));
            }
            return null;
        });
        List<Completion> done = futures.stream().map(CompletableFuture::join).toList();
        long end = done.stream().mapToLong(Completion::finishNanos).max().orElse(start);
        EngineStats after = settledStats(engine);

        long generated = 0;
        double ttftSum = 0;
        double ttftMax = 0;
        double tpotSum = 0;
        int tpotCount = 0;
        for (int i = 0; i < batch; i++) {
            Completion c = done.get(i);
            generated += c.completionTokens();
            double ttft = (c.firstTokenNanos() - submitted[i]) / 1e6;
            ttftSum += ttft;
            ttftMax = Math.max(ttftMax, ttft);
            if (c.completionTokens() > 1) {
                tpotSum += (c.finishNanos() - c.firstTokenNanos()) / 1e6 / (c.completionTokens() - 1);
                tpotCount++;
            }
        }
        return new Result(workload, batch, workload.equals("none") ? 0 : lens.length, promptLen, genLen,
                (end - start) / 1e9, generated, ttftSum / batch, ttftMax, tpotCount == 0 ? 0 : tpotSum / tpotCount,
                after.steps() - before.steps(), engine.adapters().loadCount() - loadsBefore,
                after.preemptions() - before.preemptions());
    }

    /** Stats after every step so far was published (the engine publishes before it reads its inbox again). */
    private static EngineStats settledStats(Engine engine) {
        engine.callOnEngineThread(() -> null);
        return engine.stats();
    }

    /**
     * A tokenizer of {@code vocab} tokens named "t0", "t1", …, no merges: the engine needs one to turn
     * generated ids into text, and every id the model can produce must have a token.
     */
    static Tokenizer idTokenizer(int vocab) {
        StringBuilder json = new StringBuilder(vocab * 12 + 64).append("{\"model\":{\"type\":\"BPE\",\"vocab\":{");
        for (int i = 0; i < vocab; i++) {
            json.append(i == 0 ? "" : ",").append("\"t").append(i).append("\":").append(i);
        }
        return Tokenizer.fromJson(json.append("},\"merges\":[]}}").toString(), null);
    }
}
