package ai.punica.cli;

import ai.punica.backend.Backends;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
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
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;
import sun.misc.Signal;

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

    @Option(names = "--adapter-root", paramLabel = "DIR", description = "Directory under which "
            + "/v1/load_lora_adapter may load adapters at runtime (repeatable; default: the parent directories of "
            + "the --adapters).")
    List<Path> adapterRoots = new ArrayList<>();

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8000", description = "Port (default: ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--api-key", description = "Require `Authorization: Bearer KEY` on /v1/ (default: the "
            + "PUNICA_API_KEY environment variable, else no key).")
    String apiKey;

    @Option(names = "--backend", defaultValue = "auto", description = "auto, cpu, reference or cuda.")
    String backend;

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

    @Option(names = "--shutdown-timeout", defaultValue = "30", description = "Seconds running requests may take "
            + "to finish on SIGTERM before they are cancelled (default: ${DEFAULT-VALUE}).")
    long shutdownTimeoutSeconds;

    @Override
    public Integer call() throws Exception {
        if (!(gpuMemoryUtilization > 0 && gpuMemoryUtilization <= 1)) {
            throw new ParameterException(spec.commandLine(), "--gpu-memory-utilization " + gpuMemoryUtilization
                    + " must be in (0, 1]");
        }
        Path modelDir = model != null ? model : Defaults.demoModel();
        if (!Files.isRegularFile(modelDir.resolve("config.json"))) {
            throw new ParameterException(spec.commandLine(), "no model at " + modelDir
                    + " (config.json missing); pass --model DIR");
        }
        Map<String, Path> adapterDirs = model == null && adapters.isEmpty()
                ? Defaults.adaptersUnder(Defaults.demoAdapters()) : parseAdapters();
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
            throw new ParameterException(spec.commandLine(), "--backend " + backend + ": " + e.getMessage());
        }
        EngineBuilder builder = new EngineBuilder().model(modelDir).backend(backend).config(config)
                .memoryUtilization(kvCacheMib != null ? 0 : gpuMemoryUtilization).adapters(adapterDirs);
        if (servedModelName != null) {
            builder.modelName(servedModelName);
        } else if (model == null) {
            builder.modelName(DEMO_MODEL_NAME); // not "model", the bundled directory's name
        }
        String key = apiKey != null ? apiKey : System.getenv("PUNICA_API_KEY");
        EngineBuilder.Runtime built;
        try {
            built = builder.build();
        } catch (RuntimeException e) {
            // Bad model or adapter files, unknown backend, sizes that do not fit: say what, not a stack trace.
            System.err.println("punica serve: cannot start the engine: " + e.getMessage());
            return 1;
        }
        try (var runtime = built) {
            PunicaServer server = PunicaServer.builder().runtime(runtime).host(host).port(port).apiKey(key)
                    .adapterRoots(roots).maxBodyBytes(maxBodyBytes).modelRoot(modelDir.toString()).build().start();
            CountDownLatch stopped = new CountDownLatch(1);
            Runnable stop = () -> {
                server.stop(Duration.ofSeconds(shutdownTimeoutSeconds));
                stopped.countDown();
            };
            // Handled signals (not a shutdown hook), so the process drains requests and exits 0, not 143.
            for (String signal : List.of("TERM", "INT")) {
                try {
                    Signal.handle(new Signal(signal), s -> Thread.ofPlatform().name("punica-stop").start(stop));
                } catch (IllegalArgumentException e) {
                    // SIGINT is ignored in background jobs and cannot be handled then; SIGTERM still works.
                }
            }
            System.out.println("Punica-J serving " + runtime.engine().baseModelName()
                    + (adapterDirs.isEmpty() ? "" : " with adapters " + String.join(", ", adapterDirs.keySet()))
                    + " at " + server.baseUrl() + "/v1" + (key != null ? " (API key required)" : ""));
            System.out.flush();
            stopped.await();
        }
        return 0;
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

    private EngineConfig engineConfig() {
        EngineConfig d = Backends.provider(backend).hasDevice() ? EngineConfig.deviceDefaults() : EngineConfig.defaults();
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
        return b.build();
    }
}
