package ai.punica.cli;

import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineException;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.engine.TokenDelta;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code punica generate}: one prompt, streamed to stdout. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Generate a completion for one prompt, with the base model or an adapter.")
final class GenerateCommand implements Callable<Integer> {

    @Option(names = "--model", description = "Model directory (default: the bundled demo model).")
    Path model;

    @Option(names = "--adapter-dir", description = "Directory whose subdirectories are PEFT adapters "
            + "(default: the bundled demo adapters).")
    Path adapterRoot;

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

    @Option(names = "--backend", defaultValue = "auto", description = "auto, cpu, reference or cuda.")
    String backend;

    @Override
    public Integer call() throws Exception {
        Path modelDir = model != null ? model : Defaults.demoModel();
        Map<String, Path> adapters = Defaults.adaptersUnder(adapterRoot != null ? adapterRoot : Defaults.demoAdapters());
        try (var runtime = new EngineBuilder().model(modelDir).backend(backend).adapters(adapters).build()) {
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
            runtime.engine().submit(new GenerationRequest("cli-1", adapter, ids, params), new GenerationListener() {
                @Override
                public void onToken(TokenDelta delta) {
                    System.out.print(delta.text());
                    System.out.flush();
                }

                @Override
                public void onFinish(Completion completion) {
                    done.complete(completion);
                }

                @Override
                public void onError(EngineException error) {
                    done.completeExceptionally(error);
                }
            });
            Completion c = done.join();
            System.out.println();
            double seconds = (c.finishNanos() - c.arrivalNanos()) / 1e9;
            System.err.printf("[%d prompt tokens, %d generated, finish %s, %.2f s, %.1f tokens/s]%n",
                    c.promptTokens(), c.completionTokens(), c.finishReason().openAiName(), seconds,
                    c.completionTokens() / seconds);
            return 0;
        }
    }
}
