package ai.punica.bench.cli;

import picocli.CommandLine.Command;

/** {@code punica bench}: the serving benchmark and the benchmark model writer. */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Benchmarks: load an OpenAI-compatible server (serve), write a random benchmark model "
                + "with adapters (checkpoint).",
        subcommands = {ServeBenchCommand.class, CheckpointCommand.class})
public final class BenchCommand {
}
