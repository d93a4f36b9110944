package ai.punica.bench.cli;

import ai.punica.bench.BenchCheckpoint;
import ai.punica.bench.RandomAdapters;
import ai.punica.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code punica bench checkpoint}: a random-weight model of a named shape and N random PEFT adapters. */
@Command(name = "checkpoint", mixinStandardHelpOptions = true,
        description = "Write a random-weight model (config.json, model.safetensors, the repository's tokenizer) "
                + "into OUT/model and N random PEFT LoRA adapters into OUT/adapters/a000, a001, ...")
final class CheckpointCommand extends BenchSubcommand {
    @Option(names = "--shape", defaultValue = "llama-2-7b",
            description = "llama-2-7b, llama-3-8b, mistral-7b or tiny (default: ${DEFAULT-VALUE}).")
    String shape;

    @Option(names = "--out", required = true, description = "Directory to write model/ and adapters/ into.")
    Path out;

    @Option(names = "--adapters", defaultValue = "0", description = "Number of adapters (default: ${DEFAULT-VALUE}).")
    int adapters;

    @Option(names = "--rank", defaultValue = "16", description = "LoRA rank r (default: ${DEFAULT-VALUE}).")
    int rank;

    @Option(names = "--alpha", defaultValue = "32", description = "lora_alpha (default: ${DEFAULT-VALUE}).")
    double alpha;

    @Option(names = "--targets", defaultValue = "all", description = "Target modules, e.g. q_proj,v_proj, or all "
            + "seven projections (default: ${DEFAULT-VALUE}).")
    String targets;

    @Option(names = "--distinct-adapter-weights", description = "Write this many distinct weight files; adapter i "
            + "hard-links the weights of adapter i mod K (default: all distinct). 1,000 rank-16 adapters of a 7B "
            + "model are 80 GB when distinct.")
    Integer distinctWeights;

    @Option(names = "--no-model", description = "Write only the adapters (the model's shape still sets theirs).")
    boolean noModel;

    @Option(names = "--fixtures", description = "The repository's fixtures/ directory, where the tokenizers are "
            + "(default: fixtures/ under -Dpunica.home, -Dpunica.repo.root or the working directory).")
    Path fixtures;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the weights (default: ${DEFAULT-VALUE}).")
    long seed;

    @Override
    public Integer call() throws IOException {
        BenchCheckpoint.Shape s;
        RandomAdapters writer;
        try {
            s = BenchCheckpoint.Shape.of(shape);
            writer = new RandomAdapters(rank, alpha, RandomAdapters.parseTargets(targets));
        } catch (IllegalArgumentException e) {
            throw usageError(e.getMessage());
        }
        ModelConfig config = s.config();
        if (!noModel) {
            Path fixturesDir = fixtures != null ? fixtures : defaultFixtures();
            long t0 = System.nanoTime();
            long bytes;
            try {
                bytes = BenchCheckpoint.write(s, out.resolve("model"), fixturesDir, seed);
            } catch (IllegalArgumentException e) {
                throw usageError(e.getMessage());
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            System.out.printf(Locale.ROOT, "wrote %s (%s, %.2f GB of bf16 weights) in %.1f s (%.2f GB/s)%n",
                    out.resolve("model"), s.id(), bytes / 1e9, seconds, bytes / 1e9 / seconds);
        }
        if (adapters > 0) {
            int distinct = distinctWeights != null ? Math.min(distinctWeights, adapters) : adapters;
            long t0 = System.nanoTime();
            writer.write(config, out.resolve("adapters"), "a", adapters, distinct, seed);
            System.out.printf(Locale.ROOT, "wrote %d adapters (rank %d on %s, %d distinct weight files of %.1f MB) to "
                            + "%s in %.1f s%n", adapters, rank, targets, distinct, writer.weightBytes(config) / 1e6,
                    out.resolve("adapters"), (System.nanoTime() - t0) / 1e9);
        }
        return 0;
    }

    private static Path defaultFixtures() {
        for (String property : new String[] {"punica.home", "punica.repo.root"}) {
            String dir = System.getProperty(property);
            if (dir != null && Files.isDirectory(Path.of(dir, "fixtures"))) {
                return Path.of(dir, "fixtures");
            }
        }
        return Path.of("fixtures");
    }
}
