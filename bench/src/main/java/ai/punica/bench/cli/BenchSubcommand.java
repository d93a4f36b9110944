package ai.punica.bench.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** A {@code punica bench} subcommand, with the way it refuses a bad argument. */
abstract class BenchSubcommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    /**
     * A bad argument, found after parsing: {@code punica}'s handler prints it in one line with where to look,
     * as it does picocli's own parse errors (no stack trace), and exits 2.
     */
    ParameterException usageError(String message) {
        return new ParameterException(spec.commandLine(), message);
    }
}
