package ai.punica.cli;

import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.DirectoryAdapterSource;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code punica generate}: one prompt, streamed to stdout. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate a completion for one prompt, with the base model or an adapter.")
final class GenerateCommand implements Callable<Integer> {

    @Option(names = "--model", description = "Model directory (default: the bundled demo model).")
    Path model;

    @Option(names = "--adapter-dir", description = "Directory whose subdirectories are PEFT adapters; only the one "
            + "--adapter names is loaded (default: the bundled demo adapters).")
    Path adapterRoot;

    @Option(names = "--max-lora-rank", description = "Largest adapter rank accepted (default: the engine's, 64).")
    Integer maxLoraRank;

    @Option(names = {"-a", "--adapter"}, description = "Adapter name; omit for the base model.")
    String adapter;

    @Option(names = {"-p", "--prompt"}, required = true, description = "Prompt text.")
    String prompt;

    @Option(names = "--chat", description = "Wrap the prompt as a user message with the model's chat template.")
    boolean chat;

    @Option(names = "--max-tokens", defaultValue = "64")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0")
    float temperature;

    @Option(names = "--top-p", defaultValue = "1")
    float topP;

    @Option(names = "--top-k", defaultValue = "0")
    int topK;

    @Option(names = "--min-p", defaultValue = "0")
    float minP;

    @Option(names = "--repetition-penalty", defaultValue = "1")
    float repetitionPenalty;

    @Option(names = "--seed")
    Long seed;

    @Option(names = "--stop", description = "Stop string (repeatable).")
    List<String> stop;

    @Mixin
    BackendOption backend;

    @Option(names = "--batch-invariant", description = "Fixed reduction orders on the backend, so the output "
            + "bits do not depend on the batch (as under punica serve --batch-invariant).")
    boolean batchInvariant;

    @Override
    public Integer call() throws Exception {
        Path modelDir = model != null ? model : Defaults.demoModel();
        Path root = adapterRoot != null ? adapterRoot : Defaults.demoAdapters();
        Map<String, Path> available = DirectoryAdapterSource.adaptersIn(root);
        // Only the adapter asked for is registered: another adapter in the directory that this model
        // refuses must not stop this generation.
        Map<String, Path> adapters = Map.of();
        if (adapter != null) {
            Path dir = available.get(adapter);
            if (dir == null) {
                System.err.println("punica generate: no adapter '" + adapter + "' under " + root + " (found: "
                        + (available.isEmpty() ? "none" : String.join(", ", available.keySet()))
                        + "); pass --adapter-dir DIR");
                return 1;
            }
            adapters = Map.of(adapter, dir);
        }
        EngineConfig.Builder configBuilder = EngineConfig.builder().batchInvariant(batchInvariant);
        if (maxLoraRank != null) {
            configBuilder.maxLoraRank(maxLoraRank);
        }
        EngineConfig config = configBuilder.build();
        EngineBuilder.Runtime built;
        try {
            built = new EngineBuilder().model(modelDir).backend(backend.name()).config(config).adapters(adapters)
                    .build();
        } catch (RuntimeException e) {
            // Bad model or adapter files, an unknown backend: say what, in one line, as serve does.
            System.err.println("punica generate: cannot start the engine: " + e.getMessage());
            return 1;
        }
        try (var runtime = built) {
            var tokenizer = runtime.tokenizer();
            int[] ids;
            if (chat) {
                var template = tokenizer.chatTemplate().orElseThrow(() ->
                        new IllegalArgumentException(tokenizer.chatTemplateProblem().orElse("the model has no chat template")));
                String text = template.render(List.of(Map.of("role", "user", "content", prompt)), true, Map.of());
                ids = tokenizer.encode(text, false);
            } else {
                ids = tokenizer.encode(prompt, true);
            }
            SamplingParams params = SamplingParams.builder().temperature(temperature).topP(topP).topK(topK).minP(minP)
                    .repetitionPenalty(repetitionPenalty).seed(seed).maxTokens(maxTokens).stop(stop).build();
            CompletableFuture<Completion> done = new CompletableFuture<>();
            try {
                params.validate();
            } catch (RuntimeException e) {
                System.err.println("punica generate: " + e.getMessage());
                return 1;
            }
            runtime.engine().submit(new GenerationRequest("cli-1", adapter, ids, params),
                    GenerationListener.completing(done, delta -> {
                        System.out.print(delta.text());
                        System.out.flush();
                    }));
            Completion c;
            try {
                c = done.join();
            } catch (java.util.concurrent.CompletionException e) {
                System.out.println();
                System.err.println("punica generate: " + e.getCause().getMessage());
                return 1;
            }
            System.out.println();
            double seconds = (c.finishNanos() - c.arrivalNanos()) / 1e9;
            System.err.printf("[%d prompt tokens, %d generated, finish %s, %.2f s, %.1f tokens/s]%n",
                    c.promptTokens(), c.completionTokens(), c.finishReason().openAiName(), seconds,
                    c.completionTokens() / seconds);
            return 0;
        }
    }
}
