package ai.punica.cli;

import ai.punica.backend.Backends;
import ai.punica.cluster.EngineCluster;
import ai.punica.cluster.PlacementPolicy;
import ai.punica.engine.EngineBuilder;
import ai.punica.model.ModelConfig;
import ai.punica.parallel.ShardLayout;
import ai.punica.engine.EngineConfig;
import ai.punica.lora.AdapterOptions;
import ai.punica.lora.AdapterSource;
import ai.punica.lora.DirectoryAdapterSource;
import ai.punica.server.PunicaServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code punica serve}: the OpenAI-compatible server. SIGTERM and Ctrl-C stop it gracefully (running
 * requests may finish until --shutdown-timeout), and the process exits 0.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve the base model and its LoRA adapters over an OpenAI-compatible HTTP API.")
final class ServeCommand implements Callable<Integer> {
    static final String DEMO_MODEL_NAME = "punica-demo";

    @Spec
    CommandSpec spec;

    @Option(names = "--model", description = "Model directory (default: the bundled demo model, with its adapters).")
    Path model;

    @Option(names = "--served-model-name", description = "Id of the base model in the API (default: the model "
            + "directory's name; punica-demo for the bundled model).")
    String servedModelName;

    @Option(names = "--adapters", arity = "1..*", paramLabel = "[NAME=]DIR",
            description = "Adapter directories (PEFT); the name is the directory's name unless given as NAME=DIR.")
    List<String> adapters = new ArrayList<>();

    @Option(names = "--adapter-root", paramLabel = "DIR", description = "Directory of adapters served on demand: "
            + "a request for model NAME that is not loaded loads DIR/NAME (NAME may be nested, org/name), and "
            + "/v1/load_lora_adapter may load from under DIR (repeatable; without it, only the load endpoint works, "
            + "under the parent directories of the --adapters).")
    List<Path> adapterRoots = new ArrayList<>();

    @Option(names = "--max-loras", description = "Most distinct adapters in one step (default: one per slot, "
            + "--lora-slots).")
    Integer maxLoras;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8000", description = "Port (default: ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--api-key", description = "Require `Authorization: Bearer KEY` on /v1/ (default: the "
            + "PUNICA_API_KEY environment variable, else no key).")
    String apiKey;

    @Mixin
    BackendOption backend;

    @Option(names = "--batch-invariant", description = "A request's output bits do not depend on which other "
            + "requests and adapters share its steps: fixed reduction orders on the backend, at some cost in speed "
            + "(every backend; on cuda: fixed-size GEMM calls, the general attention kernel, no split-K).")
    boolean batchInvariant;

    @Option(names = "--max-waiting", description = "Queued requests before new ones get HTTP 429.")
    Integer maxWaiting;

    @Option(names = "--max-batch-tokens", description = "Token budget of one engine step.")
    Integer maxBatchTokens;

    @Option(names = "--max-running", description = "Most sequences in one step.")
    Integer maxRunning;

    @Option(names = "--kv-cache-mib", description = "Memory for the KV cache, in MiB (default: sized from "
            + "--gpu-memory-utilization on a GPU, 256 MiB on the CPU).")
    Long kvCacheMib;

    @Option(names = "--gpu-memory-utilization", defaultValue = "0.9", description = "Share of the GPU's memory the "
            + "engine may use (weights, activations, adapter slots, KV cache); the KV cache gets what is left. "
            + "Ignored on the CPU and when --kv-cache-mib is given. Default: ${DEFAULT-VALUE}.")
    double gpuMemoryUtilization;

    @Option(names = "--lora-slots", description = "Adapters resident on the backend at once.")
    Integer loraSlots;

    @Option(names = "--max-lora-rank", description = "Largest adapter rank accepted.")
    Integer maxLoraRank;

    @Option(names = "--max-model-len", description = "Longest sequence, prompt + output (default: the model's).")
    Integer maxModelLen;

    @Option(names = "--max-body-bytes", defaultValue = "8388608", description = "Largest request body "
            + "(default: ${DEFAULT-VALUE}).")
    long maxBodyBytes;

    @Option(names = "--request-read-timeout", defaultValue = "30", description = "Seconds a request's headers "
            + "and body may take to arrive, from its first byte; a stalled client is disconnected (default: "
            + "${DEFAULT-VALUE}).")
    long requestReadTimeoutSeconds;

    @Option(names = "--keep-alive-timeout", defaultValue = "5", description = "Seconds an idle keep-alive "
            + "connection stays open (default: ${DEFAULT-VALUE}, as vLLM).")
    long keepAliveTimeoutSeconds;

    @Option(names = "--max-connections", defaultValue = "10000", description = "Open connections at most; more "
            + "clients wait until one closes (default: ${DEFAULT-VALUE}).")
    int maxConnections;

    @Option(names = "--allowed-origins", split = ",", defaultValue = "*", description = "Origins browsers may call "
            + "the API from (CORS), comma-separated; * allows any, as vLLM (default: ${DEFAULT-VALUE}).")
    List<String> allowedOrigins;

    @Option(names = "--max-choices", defaultValue = "128", description = "Most completions one request may ask "
            + "for: prompts × n (default: ${DEFAULT-VALUE}).")
    int maxChoices;

    @Option(names = "--shutdown-timeout", defaultValue = "30", description = "Seconds running requests may take "
            + "to finish on SIGTERM before they are cancelled (default: ${DEFAULT-VALUE}).")
    long shutdownTimeoutSeconds;

    @Option(names = "--engines", defaultValue = "1", description = "Engines in this process, each with its own KV "
            + "cache (--kv-cache-mib each) and thread, behind one API (default: ${DEFAULT-VALUE}). For a GPU per "
            + "engine use --devices.")
    int engineCount;

    @Option(names = "--tensor-parallel", paramLabel = "N", defaultValue = "1", description = "Split the model over "
            + "N ranks (tensor parallelism), one engine: GPUs 0..N-1 with NCCL on the CUDA backend, N threads on the "
            + "CPU backend. N must divide the attention heads and intermediate_size, and divide or be a multiple "
            + "of the KV heads (default: ${DEFAULT-VALUE}).")
    int tensorParallel;

    @Option(names = "--devices", paramLabel = "0,1,...|all", description = "One engine per listed GPU (CUDA), each "
            + "bound to its device and sized by --gpu-memory-utilization of it; 'all' takes every GPU.")
    String devices;

    @Option(names = "--placement", defaultValue = "consolidate", description = "How requests are placed on engines "
            + "when there are several: consolidate (Punica's: the busiest engine with room), least-loaded or "
            + "round-robin (default: ${DEFAULT-VALUE}).")
    String placement;

    @Option(names = "--cluster-queue", description = "Requests held while no engine has room, when there are "
            + "several engines; beyond it, HTTP 429 (default: --max-waiting).")
    Integer clusterQueue;

    @Option(names = "--idle-after", defaultValue = "60", description = "Seconds without a request after which an "
            + "engine is reported idle (punica_engine_idle), so an autoscaler may release it "
            + "(default: ${DEFAULT-VALUE}).")
    long idleAfterSeconds;

    @Option(names = "--consolidate-below", defaultValue = "0", description = "Active consolidation, with several "
            + "engines: an engine holding fewer requests than this (but some) hands them to busier engines with room, "
            + "so that it empties and can be released; 0 turns it off (default: ${DEFAULT-VALUE}).")
    int consolidateBelow;

    @Option(names = "--consolidate-interval-ms", defaultValue = "500", description = "How often engines are looked "
            + "at for --consolidate-below (default: ${DEFAULT-VALUE}).")
    long consolidateIntervalMs;

    @Override
    public Integer call() throws Exception {
        if (!(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1)) {
            throw new ParameterException(spec.commandLine(), "--gpu-memory-utilization " + gpuMemoryUtilization
                    + " must be in (0, 1]");
        }
        if (requestReadTimeoutSeconds < 1 || keepAliveTimeoutSeconds < 1 || maxConnections < 1 || maxChoices < 1) {
            throw new ParameterException(spec.commandLine(), "--request-read-timeout, --keep-alive-timeout, "
                    + "--max-connections and --max-choices must be at least 1");
        }
        Path modelDir = model != null ? model : Defaults.demoModel();
        if (!Files.isRegularFile(modelDir.resolve("config.json"))) {
            throw new ParameterException(spec.commandLine(), "no model at " + modelDir
                    + " (config.json missing); pass --model DIR");
        }
        Map<String, Path> adapterDirs = model == null && adapters.isEmpty()
                ? DirectoryAdapterSource.adaptersIn(Defaults.demoAdapters()) : parseAdapters();
        List<Path> roots = new ArrayList<>(adapterRoots);
        if (roots.isEmpty()) {
            Set<Path> parents = new LinkedHashSet<>();
            adapterDirs.values().forEach(d -> parents.add(d.toAbsolutePath().normalize().getParent()));
            roots.addAll(parents);
        }
        EngineConfig config;
        try {
            config = engineConfig();
        } catch (RuntimeException e) {
            throw new ParameterException(spec.commandLine(), "--backend " + backend.name() + ": " + e.getMessage());
        }
        List<AdapterSource> sources = new ArrayList<>();
        for (Path root : adapterRoots) {
            try {
                sources.add(new DirectoryAdapterSource(root));
            } catch (IllegalArgumentException e) {
                throw new ParameterException(spec.commandLine(), "--adapter-root: " + e.getMessage());
            }
        }
        if (maxLoras != null && maxLoras < 1) {
            throw new ParameterException(spec.commandLine(), "--max-loras " + maxLoras + " must be at least 1");
        }
        AdapterOptions adapterOptions = AdapterOptions.defaults().withSources(sources)
                .withMaxLoras(maxLoras != null ? maxLoras : 0);
        EngineBuilder builder = new EngineBuilder().model(modelDir).backend(backend.name()).config(config)
                .memoryUtilization(kvCacheMib != null ? 0 : gpuMemoryUtilization).adapters(adapterDirs)
                .adapterOptions(adapterOptions);
        if (servedModelName != null) {
            builder.modelName(servedModelName);
        } else if (model == null) {
            builder.modelName(DEMO_MODEL_NAME); // not "model", the bundled directory's name
        }
        String key = apiKey != null ? apiKey : System.getenv("PUNICA_API_KEY");
        if (batchInvariant && tensorParallel > 1) {
            throw new ParameterException(spec.commandLine(), "--batch-invariant is not available with "
                    + "--tensor-parallel yet (the ranks' all-reduce is not in a fixed order); drop one of them");
        }
        List<Integer> deviceList = deviceList();
        checkTensorParallel(modelDir, deviceList);
        builder.tensorParallel(tensorParallel);
        PlacementPolicy policy;
        try {
            policy = PlacementPolicy.named(placement);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "--placement: " + e.getMessage());
        }
        if (idleAfterSeconds < 0) {
            throw new ParameterException(spec.commandLine(), "--idle-after " + idleAfterSeconds + " must not be negative");
        }
        if (consolidateBelow < 0) {
            throw new ParameterException(spec.commandLine(), "--consolidate-below " + consolidateBelow
                    + " must not be negative (0 turns consolidation off)");
        }
        if (consolidateIntervalMs < 1) {
            throw new ParameterException(spec.commandLine(), "--consolidate-interval-ms " + consolidateIntervalMs
                    + " must be at least 1");
        }
        try {
            PunicaServer.checkCanListen(host, port); // before loading the model, which may take minutes
        } catch (PunicaServer.ListenException e) {
            System.err.println("punica serve: " + e.getMessage());
            return 1;
        }
        int engines = deviceList.isEmpty() ? engineCount : deviceList.size();
        List<EngineBuilder.Runtime> built = new ArrayList<>();
        try {
            for (int i = 0; i < engines; i++) {
                built.add(deviceList.isEmpty() ? builder.build() : builder.device(deviceList.get(i)).build());
            }
        } catch (RuntimeException e) {
            built.forEach(EngineBuilder.Runtime::close);
            // Bad model or adapter files, unknown backend, sizes that do not fit: say what, not a stack trace.
            System.err.println("punica serve: cannot start the engine: " + e.getMessage());
            return 1;
        }
        EngineCluster cluster = built.size() == 1 ? null : EngineCluster.local(
                built.stream().map(EngineBuilder.Runtime::engine).toList(), new EngineCluster.Config(policy,
                        clusterQueue != null ? clusterQueue : config.maxWaiting(), Duration.ofSeconds(idleAfterSeconds),
                        consolidateBelow, Duration.ofMillis(consolidateIntervalMs)));
        try {
            var runtime = built.getFirst();
            var serverBuilder = PunicaServer.builder().runtime(runtime).host(host).port(port).apiKey(key)
                    .adapterRoots(roots).maxBodyBytes(maxBodyBytes).modelRoot(modelDir.toString())
                    .requestReadTimeout(Duration.ofSeconds(requestReadTimeoutSeconds))
                    .keepAliveTimeout(Duration.ofSeconds(keepAliveTimeoutSeconds))
                    .maxConnections(maxConnections).allowedOrigins(allowedOrigins).maxChoices(maxChoices);
            if (cluster != null) {
                serverBuilder.cluster(cluster);
            }
            PunicaServer server;
            try {
                server = serverBuilder.build().start();
            } catch (PunicaServer.ListenException e) {
                System.err.println("punica serve: " + e.getMessage());
                return 1;
            }
            String ready = "Punica-J serving " + runtime.engine().baseModelName()
                    + (adapterDirs.isEmpty() ? "" : " with adapters " + String.join(", ", adapterDirs.keySet()))
                    + " at " + server.baseUrl() + "/v1" + (key != null ? " (API key required)" : "")
                    + (cluster == null ? "" : " on " + built.size() + " engines (" + policy.name() + ")");
            // On the signal: drain running requests, then exit 0.
            StopSignals.announceAndAwait(ready, () -> server.stop(Duration.ofSeconds(shutdownTimeoutSeconds)));
        } finally {
            if (cluster != null) {
                cluster.close();
            }
            built.forEach(EngineBuilder.Runtime::close);
        }
        return 0;
    }

    /** --tensor-parallel against the other flags and the model's shapes: one line naming what does not fit. */
    private void checkTensorParallel(Path modelDir, List<Integer> deviceList) {
        if (tensorParallel < 1) {
            throw new ParameterException(spec.commandLine(), "--tensor-parallel " + tensorParallel
                    + " must be at least 1");
        }
        if (tensorParallel == 1) {
            return;
        }
        if (engineCount != 1 || !deviceList.isEmpty()) {
            throw new ParameterException(spec.commandLine(), "--tensor-parallel " + tensorParallel + " runs one engine "
                    + "over devices 0.." + (tensorParallel - 1) + "; it cannot be combined with --engines or --devices");
        }
        ModelConfig modelConfig;
        try {
            modelConfig = ModelConfig.load(modelDir.resolve("config.json"));
        } catch (RuntimeException e) {
            return; // the engine build reports a bad config.json with its file and field
        }
        String problem = ShardLayout.problem(modelConfig, tensorParallel);
        if (problem != null) {
            throw new ParameterException(spec.commandLine(), "--tensor-parallel " + tensorParallel + ": " + problem);
        }
    }

    /** The GPUs of --devices, checked against the machine; empty without --devices. */
    private List<Integer> deviceList() {
        if (engineCount < 1) {
            throw new ParameterException(spec.commandLine(), "--engines " + engineCount + " must be at least 1");
        }
        if (devices == null) {
            return List.of();
        }
        if (engineCount != 1) {
            throw new ParameterException(spec.commandLine(), "give --engines or --devices, not both: --devices runs "
                    + "one engine per GPU listed");
        }
        int available;
        try {
            available = Backends.provider(backend.name()).deviceCount();
        } catch (RuntimeException e) {
            throw new ParameterException(spec.commandLine(), "--devices: " + e.getMessage());
        }
        if (available == 0) {
            throw new ParameterException(spec.commandLine(), "--devices " + devices + ": backend '" + backend.name()
                    + "' has no GPUs here; use --engines N to run several CPU engines");
        }
        List<Integer> out = new ArrayList<>();
        if (devices.equals("all")) {
            for (int i = 0; i < available; i++) {
                out.add(i);
            }
            return out;
        }
        for (String part : devices.split(",", -1)) {
            int d;
            try {
                d = Integer.parseInt(part.trim());
            } catch (NumberFormatException e) {
                throw new ParameterException(spec.commandLine(), "--devices " + devices + ": '" + part
                        + "' is not a device index; give indices like 0,1 or all");
            }
            if (d < 0 || d >= available) {
                throw new ParameterException(spec.commandLine(), "--devices " + devices + ": device " + d
                        + " does not exist; this machine has " + available + " (0 to " + (available - 1) + ")");
            }
            if (out.contains(d)) {
                throw new ParameterException(spec.commandLine(), "--devices " + devices + ": device " + d
                        + " is listed twice");
            }
            out.add(d);
        }
        return out;
    }

    private Map<String, Path> parseAdapters() {
        Map<String, Path> out = new LinkedHashMap<>();
        for (String arg : adapters) {
            int eq = arg.indexOf('=');
            Path dir = Path.of(eq > 0 ? arg.substring(eq + 1) : arg);
            String name = eq > 0 ? arg.substring(0, eq) : dir.toAbsolutePath().normalize().getFileName().toString();
            if (!Files.isRegularFile(dir.resolve("adapter_config.json"))) {
                throw new ParameterException(this.spec.commandLine(), "--adapters " + arg + ": " + dir
                        + " has no adapter_config.json (expected a PEFT adapter directory)");
            }
            if (out.put(name, dir) != null) {
                throw new ParameterException(this.spec.commandLine(), "two adapters are named '" + name
                        + "'; give them names with NAME=DIR");
            }
        }
        return out;
    }

    EngineConfig engineConfig() {
        EngineConfig d = Backends.provider(backend.name()).hasDevice() ? EngineConfig.deviceDefaults()
                : EngineConfig.defaults();
        int running = maxRunning != null ? maxRunning : d.maxRunning();
        int batchTokens = maxBatchTokens != null ? maxBatchTokens : Math.max(d.maxBatchTokens(), running);
        EngineConfig.Builder b = d.toBuilder().maxRunning(running).maxBatchTokens(batchTokens);
        if (maxWaiting != null) {
            b.maxWaiting(maxWaiting);
        }
        if (kvCacheMib != null) {
            b.kvCacheBytes(kvCacheMib << 20);
        }
        if (maxModelLen != null) {
            b.maxModelLen(maxModelLen);
        }
        if (loraSlots != null) {
            b.loraSlots(loraSlots);
        }
        if (maxLoraRank != null) {
            b.maxLoraRank(maxLoraRank);
        }
        return b.batchInvariant(batchInvariant).build();
    }
}
