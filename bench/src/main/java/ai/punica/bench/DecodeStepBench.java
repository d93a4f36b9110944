package ai.punica.bench;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.Segments;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import ai.punica.engine.ModelRunner;
import ai.punica.model.ForwardBatch;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Time of one decode step of a Llama-2-7B-shaped model (random bf16 weights, made in memory) with
 * rank-16 LoRA adapters on all seven projections, for the Punica paper's workloads (MLSys'24 §7.1):
 * each of {@code batch} sequences contributes one row at context length {@code context}, rows grouped
 * into adapter segments whose lengths follow Punica's {@code get_lora_lens}:
 * <ul>
 *   <li>distinct: every row its own adapter ({@code [1]·b});</li>
 *   <li>uniform: ⌈√b⌉ adapters with equal shares;</li>
 *   <li>skewed: Zipf-like, lengths 1, ⌊1.5⌋, ⌊1.5²⌋, … (Punica's zipf:1.5);</li>
 *   <li>identical: one adapter for all rows;</li>
 *   <li>none: the base model alone (no segment has an adapter, so no SGMV runs).</li>
 * </ul>
 * The KV cache is filled by prefilling every sequence's first {@code context - 1} tokens through the
 * model; each timed step then decodes token {@code context} of every sequence (re-writing the same KV
 * slot each time). A step is {@link LlamaModel#forward}: embedding, 32 layers, lm_head and the copy of
 * the logits to the host, which waits for the device; its wall time (nanoTime) is what is reported. Where
 * the backend samples ({@link Backend#supportsSampling}), the "sampled" columns time what the engine runs
 * per decode step instead: {@link ModelRunner#forwardLogits} and greedy {@link Backend#sample} on the
 * device, only the token ids coming back.
 *
 * <p>HBM bound of a step = bytes it must read ÷ device bandwidth, the bytes being every base weight
 * once (lm_head included, the embedding table only for the batch's rows), the A and B of every distinct
 * adapter in the batch, and the keys and values of every sequence's context. The bandwidth is the honest
 * bound of issue 14 when {@code --bandwidth-gbs} gives it: the best of a device-to-device copy and a read-only
 * reduction, measured by {@code tools/bench/hbm_bound.py} (the decode part of {@code gpu_session.sh} runs it
 * first and passes it on). Without it, the bench falls back to its own element-wise add (2 reads + 1 write per
 * element), which on an H200 reads about 11% below the honest bound and so makes every "% of bound" read high;
 * the header line says which one the table uses.
 *
 * <pre>
 * bash .device-bundle/device-run bench ai.punica.bench.DecodeStepBench --out $OUT/punica_decode.csv
 * (options: --backend cuda --shape llama7b|tiny --batches 1,2,4,8,16,32,64 --context 512 --rank 16
 *  --slots 64 --warmup 3 --steps 20 --workloads none,identical,uniform,skewed,distinct --seed 1
 *  --bandwidth-gbs 4294)
 * </pre>
 */
public final class DecodeStepBench {

    private static final String LLAMA_7B = """
            {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000,
             "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16"}
            """;
    /** For a CPU smoke run of this program: same structure, toy sizes. */
    private static final String TINY = """
            {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 256,
             "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16"}
            """;
    /**
     * For CPU runs where the product shapes matter (k of 1024 and 2816, so the CPU GEMM's k blocking and
     * row tiles come into play, which "tiny" is too small for): about 60 M parameters.
     */
    private static final String SMALL = """
            {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 8192,
             "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 4,
             "num_attention_heads": 16, "num_key_value_heads": 16, "max_position_embeddings": 2048,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16"}
            """;
    private static final int PAGE_SIZE = 16;
    private static final float LORA_ALPHA = 32f;
    private static final double ZIPF_ALPHA = 1.5;

    private DecodeStepBench() {
    }

    public static void main(String[] argv) throws IOException {
        BenchArgs args = BenchArgs.parse(argv);
        WorkloadSweep sweep = WorkloadSweep.read(args, "1,2,4,8,16,32,64");
        int context = args.integer("context", 512);
        int rank = args.integer("rank", 16);
        int warmup = args.integer("warmup", 3);
        int steps = args.integer("steps", 20);
        double honestGbs = args.real("bandwidth-gbs", 0);
        int maxBatch = sweep.maxBatch();
        int slots = args.integer("slots", maxBatch);
        long seed = sweep.seed();

        ModelConfig config = sweep.model();
        int pagesPerSeq = (context + PAGE_SIZE - 1) / PAGE_SIZE;
        int prefillSeqs = Math.max(1, Math.min(maxBatch, 2048 / context)); // sequences per prefill chunk
        int maxRows = Math.max(maxBatch, prefillSeqs * (context - 1));

        try (Backend backend = Backends.create(sweep.backend())) {
            long t0 = System.nanoTime();
            LlamaModel model = LlamaModel.load(config, new RandomWeights(config, seed), backend, maxRows, maxBatch,
                    slots, rank);
            double loadSeconds = (System.nanoTime() - t0) / 1e9;
            t0 = System.nanoTime();
            fillAdapters(model, backend, slots, rank, seed);
            double adapterSeconds = (System.nanoTime() - t0) / 1e9;
            ModelRunner runner = new ModelRunner(model, maxBatch * pagesPerSeq, PAGE_SIZE);
            double addBandwidth = measureBandwidth(backend, sweep.shape().equals("tiny") ? 1 << 20 : 1 << 27);
            double bandwidth = honestGbs > 0 ? honestGbs * 1e9 : addBandwidth;
            System.out.printf(Locale.ROOT, "backend=%s shape=%s layers=%d hidden=%d; base weights loaded in %.1f s, "
                            + "%d adapters of rank %d in %.1f s; add bandwidth (2 reads + 1 write) %.0f GB/s%n",
                    backend.name(), sweep.shape(), config.numLayers(), config.hiddenSize(), loadSeconds, slots, rank,
                    adapterSeconds, addBandwidth / 1e9);
            System.out.printf(Locale.ROOT, "HBM bound below: %.0f GB/s, %s%n", bandwidth / 1e9, honestGbs > 0
                    ? "the honest bound (--bandwidth-gbs: best of a D2D copy and a read-only reduction)"
                    : "this bench's add kernel (no --bandwidth-gbs: reads high against the honest bound)");

            t0 = System.nanoTime();
            prefill(runner, maxBatch, context, prefillSeqs, pagesPerSeq, seed);
            System.out.printf(Locale.ROOT, "prefilled %d sequences x %d tokens in %.1f s%n", maxBatch, context - 1,
                    (System.nanoTime() - t0) / 1e9);

            long baseBytes = baseWeightBytes(config);
            long adapterBytes = adapterBytes(config, rank);
            long kvBytesPerToken = 2L * config.numLayers() * config.numKvHeads() * config.headDim() * 2;
            List<String> rows = new ArrayList<>();
            rows.add("workload,batch,adapters,median_ms,p10_ms,p90_ms,tokens_per_s,bound_ms,pct_of_bound,"
                    + "lora_overhead_pct,bytes_gb,nonfinite_logits,sampled_median_ms,sampled_pct_of_bound");
            Map<Integer, Double> noLoraMs = new LinkedHashMap<>();
            System.out.println();
            System.out.println("workload  batch adapters | median ms  p10   p90 | tokens/s | HBM bound ms  % of bound"
                    + " | LoRA overhead | sampled ms % of bound");
            for (String workload : sweep.workloads()) {
                for (int batch : sweep.batches()) {
                    int[] lens = segmentLengths(workload, batch);
                    ForwardBatch step = decodeStep(batch, lens, workload.equals("none"), context, pagesPerSeq,
                            config.vocabSize(), seed);
                    int adapters = workload.equals("none") ? 0 : lens.length;
                    long bytes = baseBytes + (long) batch * config.hiddenSize() * 2 + adapters * adapterBytes
                            + (long) batch * context * kvBytesPerToken;
                    double boundMs = bytes / bandwidth * 1e3;
                    int nonFinite = 0;
                    for (int i = 0; i < warmup; i++) {
                        nonFinite = countNonFinite(runner.forward(step), batch * config.vocabSize());
                    }
                    backend.profileReport(); // starts the per-kernel profile (when on) at the timed steps
                    StepRecorder recorder = backend.stepRecorder();
                    long recordsBefore = recorder == null ? 0 : recorder.records();
                    long replaysBefore = recorder == null ? 0 : recorder.replays();
                    double[] ms = new double[steps];
                    for (int i = 0; i < steps; i++) {
                        long s = System.nanoTime();
                        runner.forward(step);
                        ms[i] = (System.nanoTime() - s) / 1e6;
                    }
                    String profile = backend.profileReport();
                    long replayed = recorder == null ? 0 : recorder.replays() - replaysBefore;
                    long recorded = recorder == null ? 0 : recorder.records() - recordsBefore;
                    // What the engine runs per decode step: the forward, then greedy sampling on the device; only
                    // the token ids come back to the host (no logits copy).
                    double sampledMedian = Double.NaN;
                    if (backend.supportsSampling()) {
                        SamplingBatch greedy = greedyBatch(batch);
                        double[] sampled = new double[steps];
                        for (int i = -Math.min(warmup, 20); i < steps; i++) {
                            long s = System.nanoTime();
                            backend.sample(runner.forwardLogits(step), greedy);
                            if (i >= 0) {
                                sampled[i] = (System.nanoTime() - s) / 1e6;
                            }
                        }
                        Arrays.sort(sampled);
                        sampledMedian = sampled[steps / 2];
                    }
                    Arrays.sort(ms);
                    double median = ms[steps / 2];
                    if (workload.equals("none")) {
                        noLoraMs.put(batch, median);
                    }
                    Double base = noLoraMs.get(batch);
                    String overhead = base == null || workload.equals("none") ? ""
                            : String.format(Locale.ROOT, "%.1f", 100 * (median / base - 1));
                    System.out.printf(Locale.ROOT, "%-9s %5d %8d | %9.2f %5.2f %5.2f | %8.0f | %12.2f %10.1f%% | %7s | %8.2f %8.1f%%%s%n",
                            workload, batch, adapters, median, ms[steps / 10], ms[steps * 9 / 10], batch / median * 1e3,
                            boundMs, 100 * boundMs / median, overhead.isEmpty() ? "" : overhead + "%", sampledMedian,
                            100 * boundMs / sampledMedian, nonFinite > 0 ? "  NON-FINITE LOGITS: " + nonFinite : "");
                    if (profile != null) {
                        System.out.printf(Locale.ROOT, "%s/%d, %d steps: %s", workload, batch, steps, profile);
                    }
                    if (recorder != null && replayed != steps) {
                        System.out.printf(Locale.ROOT, "  (%s/%d: of %d timed steps %d were replayed from a CUDA graph,"
                                + " %d recorded)%n", workload, batch, steps, replayed, recorded);
                    }
                    rows.add(String.format(Locale.ROOT, "%s,%d,%d,%.4f,%.4f,%.4f,%.1f,%.4f,%.2f,%s,%.3f,%d,%.4f,%.2f",
                            workload, batch, adapters, median, ms[steps / 10], ms[steps * 9 / 10], batch / median * 1e3,
                            boundMs, 100 * boundMs / median, overhead, bytes / 1e9, nonFinite, sampledMedian,
                            100 * boundMs / sampledMedian));
                }
            }
            logitsCopyTimes(backend, sweep.batches(), config.vocabSize());
            if (sweep.out() != null) {
                Files.write(sweep.out(), rows);
                try (PrintWriter meta = new PrintWriter(Files.newBufferedWriter(Path.of(sweep.out() + ".meta")))) {
                    meta.printf(Locale.ROOT, "bandwidth_source=%s%nadd_bandwidth_gbs=%.1f%n",
                            honestGbs > 0 ? "honest" : "add", addBandwidth / 1e9);
                    meta.printf(Locale.ROOT, "bandwidth_gbs=%.1f%nbase_weight_gb=%.4f%nadapter_gb=%.5f%n"
                                    + "kv_bytes_per_token=%d%ncontext=%d%nrank=%d%nsteps=%d%nwarmup=%d%n", bandwidth / 1e9,
                            baseBytes / 1e9, adapterBytes / 1e9, kvBytesPerToken, context, rank, steps, warmup);
                }
            }
            model.close();
        }
    }

    /**
     * "llama7b" (Llama-2-7B's shape), "small" (hidden 1024, 4 layers: CPU runs with real product shapes) or
     * "tiny" (the same structure at toy sizes, for CPU smoke runs).
     */
    static ModelConfig modelConfig(String shape) {
        return switch (shape) {
            case "llama7b" -> ModelConfig.parse(LLAMA_7B, shape);
            case "small" -> ModelConfig.parse(SMALL, shape);
            case "tiny" -> ModelConfig.parse(TINY, shape);
            default -> throw new IllegalArgumentException("unknown shape '" + shape + "'; known: llama7b, small, tiny");
        };
    }

    /** Random A [rank, in] and B [out, rank] for every projection of every layer in every slot. */
    private static void fillAdapters(LlamaModel model, Backend backend, int slots, int rank, long seed) {
        ModelConfig c = model.config();
        for (int slot = 0; slot < slots; slot++) {
            for (int l = 0; l < c.numLayers(); l++) {
                for (Projection p : Projection.values()) {
                    long s = seed * 1_000_003L + ((long) slot * c.numLayers() + l) * 16 + p.ordinal();
                    String name = "slot" + slot + "." + p.modulePath(l);
                    LoraWeights w = model.loraWeights(l, p);
                    w.a()[slot] = backend.loadWeight(RandomWeights.uniform(name + ".lora_A", new long[] {rank,
                            p.inFeatures(c)}, 0, RandomWeights.STD * Math.sqrt(3), s));
                    w.b()[slot] = backend.loadWeight(RandomWeights.uniform(name + ".lora_B", new long[] {
                            p.outFeatures(c), rank}, 0, RandomWeights.STD * Math.sqrt(3), ~s));
                    w.rank()[slot] = rank;
                    w.scale()[slot] = LORA_ALPHA / rank;
                }
            }
        }
    }

    /** Punica's get_lora_lens: rows per adapter segment, largest first. */
    static int[] segmentLengths(String workload, int batch) {
        return switch (workload) {
            case "none", "identical" -> new int[] {batch};
            case "distinct" -> {
                int[] ones = new int[batch];
                Arrays.fill(ones, 1);
                yield ones;
            }
            case "uniform" -> {
                int n = (int) Math.ceil(Math.sqrt(batch));
                int[] lens = new int[n];
                for (int i = 0; i < n; i++) {
                    lens[i] = batch / n + (i < batch % n ? 1 : 0);
                }
                yield lens;
            }
            case "skewed" -> {
                List<Integer> lens = new ArrayList<>();
                double a = 1;
                int sum = 0;
                while (sum + (int) Math.floor(a) < batch) {
                    lens.add((int) Math.floor(a));
                    sum += (int) Math.floor(a);
                    a *= ZIPF_ALPHA;
                }
                lens.add(batch - sum);
                yield lens.stream().sorted((x, y) -> y - x).mapToInt(Integer::intValue).toArray();
            }
            default -> throw new IllegalArgumentException("unknown workload '" + workload
                    + "'; known: none, identical, uniform, skewed, distinct");
        };
    }

    private static SamplingBatch greedyBatch(int rows) {
        SamplingBatch.Builder builder = SamplingBatch.builder();
        for (int r = 0; r < rows; r++) {
            builder.row(SamplingRow.GREEDY);
        }
        return builder.build();
    }

    /** One row per sequence s (pages [s·pagesPerSeq, …)), at position context - 1; segment i uses slot i. */
    private static ForwardBatch decodeStep(int batch, int[] lens, boolean noLora, int context, int pagesPerSeq,
                                           int vocab, long seed) {
        SplittableRandom random = new SplittableRandom(seed + batch);
        int[] tokens = random.ints(batch, 1, vocab).toArray();
        int[] positions = new int[batch];
        Arrays.fill(positions, context - 1);
        AttentionBatch attention = attention(0, batch, context, 1, pagesPerSeq);
        int[] starts = new int[lens.length + 1];
        int[] slots = new int[lens.length];
        for (int i = 0; i < lens.length; i++) {
            starts[i + 1] = starts[i] + lens[i];
            slots[i] = noLora ? -1 : i;
        }
        int[] logitRows = new int[batch];
        Arrays.setAll(logitRows, i -> i);
        return new ForwardBatch(tokens, positions, attention, new Segments(starts, slots), logitRows, null);
    }

    /** Sequences [first, first + count), each with {@code queryLen} rows ending at token {@code context - 1}. */
    private static AttentionBatch attention(int first, int count, int context, int queryLen, int pagesPerSeq) {
        int[] queryStarts = new int[count + 1];
        int[] contextLens = new int[count];
        int[] pageTableStarts = new int[count + 1];
        int[] pageTables = new int[count * pagesPerSeq];
        int[] slotMapping = new int[count * queryLen];
        for (int s = 0; s < count; s++) {
            queryStarts[s + 1] = queryStarts[s] + queryLen;
            contextLens[s] = context;
            pageTableStarts[s + 1] = pageTableStarts[s] + pagesPerSeq;
            for (int p = 0; p < pagesPerSeq; p++) {
                pageTables[s * pagesPerSeq + p] = (first + s) * pagesPerSeq + p;
            }
            for (int r = 0; r < queryLen; r++) {
                int t = context - queryLen + r;
                slotMapping[s * queryLen + r] = pageTables[s * pagesPerSeq + t / PAGE_SIZE] * PAGE_SIZE + t % PAGE_SIZE;
            }
        }
        return new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables, slotMapping, PAGE_SIZE);
    }

    /** Tokens [0, context - 1) of every sequence, {@code perChunk} sequences per forward, no adapters. */
    private static void prefill(ModelRunner runner, int sequences, int context, int perChunk,
                                int pagesPerSeq, long seed) {
        LlamaModel model = runner.model();
        SplittableRandom random = new SplittableRandom(seed);
        int len = context - 1;
        for (int first = 0; first < sequences; first += perChunk) {
            int count = Math.min(perChunk, sequences - first);
            int rows = count * len;
            int[] tokens = random.ints(rows, 1, model.config().vocabSize()).toArray();
            int[] positions = new int[rows];
            Arrays.setAll(positions, r -> r % len);
            AttentionBatch attention = attention(first, count, len, len, pagesPerSeq);
            Segments segments = new Segments(new int[] {0, rows}, new int[] {-1});
            int[] logitRows = new int[count];
            Arrays.setAll(logitRows, s -> (s + 1) * len - 1);
            ForwardBatch last = ForwardBatch.restrictToLogitRows(tokens, positions, attention, segments, logitRows);
            float[] logits = runner.forward(new ForwardBatch(tokens, positions, attention, segments, logitRows, last));
            int bad = countNonFinite(logits, count * model.config().vocabSize());
            if (bad > 0) {
                throw new IllegalStateException("prefill of sequences " + first + ".." + (first + count - 1) + " gave "
                        + bad + " non-finite logits; the random weights are scaled wrongly");
            }
        }
    }

    /** Device bandwidth from {@code out = a + b} over {@code elements} bf16 elements (3 × 2 bytes each). */
    private static double measureBandwidth(Backend backend, int elements) {
        int cols = 4096;
        int rows = Math.max(1, elements / cols);
        Tensor a = backend.allocate(rows, cols);
        Tensor b = backend.allocate(rows, cols);
        Tensor c = backend.allocate(rows, cols);
        Tensor one = backend.allocate(1, 1);
        float[] sink = new float[1];
        try {
            SplittableRandom random = new SplittableRandom(7);
            float[] noise = new float[rows * cols];
            for (int i = 0; i < noise.length; i++) {
                noise[i] = (float) random.nextDouble(-1, 1);
            }
            backend.upload(noise, a);
            backend.upload(noise, b);
            int reps = 20;
            double[] seconds = new double[5];
            for (int trial = -1; trial < seconds.length; trial++) {
                backend.download(one, sink);
                long s = System.nanoTime();
                for (int i = 0; i < reps; i++) {
                    backend.add(a, b, c);
                }
                backend.download(one, sink);
                if (trial >= 0) {
                    seconds[trial] = (System.nanoTime() - s) / 1e9;
                }
            }
            Arrays.sort(seconds);
            return 3.0 * 2 * rows * cols * reps / seconds[seconds.length / 2];
        } finally {
            backend.free(a);
            backend.free(b);
            backend.free(c);
            backend.free(one);
        }
    }

    /** What copying a batch's logits to the host costs (the model's float32 logits, device → host). */
    private static void logitsCopyTimes(Backend backend, int[] batches, int vocab) {
        int maxBatch = Arrays.stream(batches).max().orElseThrow();
        Tensor logits = backend.allocateLogits(maxBatch, vocab);
        float[] host = new float[maxBatch * vocab];
        StringBuilder line = new StringBuilder("logits to host (ms, median of 20):");
        for (int batch : batches) {
            double[] ms = new double[20];
            for (int i = -3; i < ms.length; i++) {
                long s = System.nanoTime();
                backend.download(logits.firstRows(batch), host);
                if (i >= 0) {
                    ms[i] = (System.nanoTime() - s) / 1e6;
                }
            }
            Arrays.sort(ms);
            line.append(String.format(Locale.ROOT, " b%d %.3f", batch, ms[ms.length / 2]));
        }
        System.out.println(line);
        backend.free(logits);
    }

    /** Bytes of base weights a decode step reads: every projection, the norms and lm_head. */
    static long baseWeightBytes(ModelConfig c) {
        long perLayer = 2L * c.hiddenSize();
        for (Projection p : Projection.values()) {
            perLayer += (long) p.inFeatures(c) * p.outFeatures(c);
        }
        return 2L * (perLayer * c.numLayers() + c.hiddenSize() + (long) c.vocabSize() * c.hiddenSize());
    }

    /** Bytes of one adapter (A and B of all seven projections of every layer), bf16. */
    static long adapterBytes(ModelConfig c, int rank) {
        long perLayer = 0;
        for (Projection p : Projection.values()) {
            perLayer += (long) rank * (p.inFeatures(c) + p.outFeatures(c));
        }
        return 2L * perLayer * c.numLayers();
    }

    private static int countNonFinite(float[] values, int n) {
        int bad = 0;
        for (int i = 0; i < n; i++) {
            if (!Float.isFinite(values[i])) {
                bad++;
            }
        }
        return bad;
    }
}
