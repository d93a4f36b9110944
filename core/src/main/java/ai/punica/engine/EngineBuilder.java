package ai.punica.engine;

import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.AdapterOptions;
import ai.punica.model.Checkpoint;
import ai.punica.model.GenerationConfig;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.parallel.TensorParallel;
import ai.punica.parallel.TensorParallelGroup;
import ai.punica.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Puts an engine together from a HuggingFace model directory (config.json, safetensors, tokenizer.json)
 * and PEFT adapter directories.
 */
public final class EngineBuilder {
    private Path modelDir;
    private String modelName;
    private String backendName = "auto";
    private EngineConfig config = EngineConfig.defaults();
    private double memoryUtilization;
    /** The device the backend binds to; -1: the backend's default. */
    private int device = -1;
    /** Ranks the model is split over (tensor parallelism); 1: the whole model on one backend. */
    private int tensorParallel = 1;
    private AdapterOptions adapterOptions = AdapterOptions.defaults();
    private final Map<String, Path> adapters = new LinkedHashMap<>();

    public EngineBuilder model(Path dir) {
        this.modelDir = dir;
        return this;
    }

    /** The id clients use for the base model; defaults to the model directory's name. */
    public EngineBuilder modelName(String name) {
        this.modelName = name;
        return this;
    }

    /** "auto" (CUDA when a GPU is present, else CPU), "cpu" or "reference". */
    public EngineBuilder backend(String name) {
        this.backendName = name;
        return this;
    }

    /** Binds the engine's backend to device {@code index} (one engine per GPU); default: the first. */
    public EngineBuilder device(int index) {
        if (index < 0) {
            throw new IllegalArgumentException("device index " + index + " is negative");
        }
        this.device = index;
        return this;
    }

    /**
     * Splits the model over {@code ranks} tensor-parallel ranks in this process ({@link TensorParallel}): on a
     * GPU backend one device each, from {@link #device} (default 0) on; on the CPU backend ranks as threads.
     * The model's heads, KV heads and intermediate size must split; {@link #build} says which does not.
     */
    public EngineBuilder tensorParallel(int ranks) {
        if (ranks < 1) {
            throw new IllegalArgumentException("tensor parallel size " + ranks + " must be at least 1");
        }
        this.tensorParallel = ranks;
        return this;
    }

    public EngineBuilder config(EngineConfig config) {
        this.config = config;
        return this;
    }

    /**
     * On a backend with a device of its own (a GPU), size the KV cache so that the engine uses this share
     * of the device's memory ({@link KvCacheSizing}), instead of {@link EngineConfig#kvCacheBytes}; 0 (the
     * default) keeps the configured size. Backends that compute in host memory always keep it.
     */
    public EngineBuilder memoryUtilization(double share) {
        if (share < 0 || share > 1) {
            throw new IllegalArgumentException("memory utilization " + share + " is not in [0, 1]");
        }
        this.memoryUtilization = share;
        return this;
    }

    /** Adapter sources for on-demand loading, the cap on distinct adapters per step, and related policy. */
    public EngineBuilder adapterOptions(AdapterOptions options) {
        this.adapterOptions = options;
        return this;
    }

    public EngineBuilder adapter(String name, Path dir) {
        adapters.put(name, dir);
        return this;
    }

    public EngineBuilder adapters(Map<String, Path> all) {
        adapters.putAll(all);
        return this;
    }

    /**
     * A running engine; closing it releases the model, the adapters and the backend. When a step fails
     * (a missing weight, an adapter directory, a KV budget that holds no page), what the earlier steps
     * made is closed, newest first, and the failure is thrown.
     */
    public Runtime build() {
        if (modelDir == null) {
            throw new IllegalStateException("no model directory given");
        }
        if (config.batchInvariant() && tensorParallel > 1) {
            throw new IllegalArgumentException("--batch-invariant is not available with tensor parallelism yet: "
                    + "the ranks' all-reduce is not part of the fixed reduction order");
        }
        // The files that need no backend first: a bad config or tokenizer costs no upload.
        ModelConfig modelConfig = ModelConfig.load(modelDir.resolve("config.json"));
        GenerationConfig generation = GenerationConfig.load(modelDir);
        Tokenizer tokenizer = Tokenizer.load(modelDir);
        Deque<AutoCloseable> made = new ArrayDeque<>();
        try {
            Backend backend;
            Checkpoint checkpoint;
            LlamaModel model;
            if (tensorParallel == 1) {
                backend = keep(made, config.batchInvariant()
                        ? Backends.provider(backendName).create(Math.max(device, 0), true)
                        : device < 0 ? Backends.create(backendName) : Backends.provider(backendName).create(device));
                checkpoint = keep(made, Checkpoint.open(modelDir));
                model = keep(made, LlamaModel.load(modelConfig, checkpoint, backend, config.maxBatchTokens(),
                        config.maxRunning(), config.loraSlots(), config.maxLoraRank()));
            } else {
                checkpoint = keep(made, Checkpoint.open(modelDir));
                model = TensorParallel.load(modelConfig, checkpoint, backendName, Math.max(device, 0), tensorParallel,
                        new TensorParallelGroup.Sizes(config.maxBatchTokens(), config.maxRunning(), config.loraSlots(),
                                config.maxLoraRank()));
                backend = keep(made, model.backend()); // rank 0's, wrapped; closing it closes every rank
                keep(made, model);
            }
            ExecutorService loader = Executors.newVirtualThreadPerTaskExecutor();
            made.push(loader::shutdownNow);
            AdapterManager adapterManager = keep(made, new AdapterManager(model, config.hostAdapterBytes(), loader,
                    adapterOptions));
            adapters.forEach(adapterManager::register);
            EngineConfig sized = config;
            if (memoryUtilization > 0 && backend.deviceMemory().isPresent()) {
                sized = config.toBuilder().kvCacheBytes(KvCacheSizing.kvCacheBytes(
                        backend.deviceMemory().orElseThrow(), memoryUtilization, modelConfig, config)).build();
            }
            String name = modelName != null ? modelName
                    : modelDir.toAbsolutePath().normalize().getFileName().toString();
            Engine engine = new Engine(name, model, tokenizer, adapterManager, sized,
                    eosTokenIds(modelConfig, generation, tokenizer));
            return new Runtime(engine, model, checkpoint, backend, adapterManager, loader, tokenizer, modelConfig);
        } catch (RuntimeException | Error e) {
            while (!made.isEmpty()) {
                try {
                    made.pop().close();
                } catch (Exception suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    private static <T extends AutoCloseable> T keep(Deque<AutoCloseable> made, T resource) {
        made.push(resource);
        return resource;
    }

    /** The union of config.json's, generation_config.json's and the tokenizer's end-of-sequence tokens. */
    private static int[] eosTokenIds(ModelConfig modelConfig, GenerationConfig generation, Tokenizer tokenizer) {
        Set<Integer> eos = new LinkedHashSet<>();
        eos.addAll(modelConfig.eosTokenIds());
        eos.addAll(generation.eosTokenIds());
        tokenizer.eosTokenId().ifPresent(eos::add);
        return eos.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Everything an engine holds, closed together. */
    public record Runtime(Engine engine, LlamaModel model, Checkpoint checkpoint, Backend backend,
                          AdapterManager adapters, ExecutorService loader, Tokenizer tokenizer,
                          ModelConfig modelConfig) implements AutoCloseable {
        @Override
        public void close() {
            engine.close();
            adapters.close();
            model.close();
            loader.shutdownNow();
            checkpoint.close();
            backend.close();
        }
    }
}
