package ai.punica.cli;

import ai.punica.bench.cli.BenchCommand;
import java.io.PrintWriter;
import java.util.logging.Level;
import java.util.logging.Logger;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.ParameterException;

/** Entry point of the {@code punica} command. */
@Command(name = "punica", mixinStandardHelpOptions = true, version = "Punica-J 0.1.0",
        description = "Multi-tenant LoRA serving for Llama-family models.",
        subcommands = {GenerateCommand.class, ServeCommand.class, RouterCommand.class, BenchCommand.class})
public final class Main {
    /**
     * The web server logs through java.util.logging, Punica-J through SLF4J (slf4j-simple): both write
     * {@code 2026-12-03 08:11:36.123 INFO logger - message}. Helidon's start-up chatter stays below WARNING.
     * Held here so the level is not lost with a collected logger.
     */
    private static final Logger HELIDON = Logger.getLogger("io.helidon");

    public static void main(String[] args) {
        System.setProperty("java.util.logging.SimpleFormatter.format", "%1$tF %1$tT.%1$tL %4$s %3$s - %5$s%6$s%n");
        HELIDON.setLevel(Level.WARNING);
        System.exit(commandLine().execute(args));
    }

    /** The command line with short argument errors: the reason and where to look, not the whole usage. */
    static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new Main());
        cli.setParameterExceptionHandler(Main::shortError);
        return cli;
    }

    private static int shortError(ParameterException e, String[] args) {
        CommandLine cmd = e.getCommandLine();
        PrintWriter err = cmd.getErr();
        err.println(cmd.getCommandSpec().qualifiedName() + ": " + e.getMessage());
        CommandLine.UnmatchedArgumentException.printSuggestions(e, err);
        err.println("Try '" + cmd.getCommandSpec().qualifiedName() + " --help' for the options.");
        err.flush();
        return cmd.getExitCodeExceptionMapper() != null ? cmd.getExitCodeExceptionMapper().getExitCode(e)
                : cmd.getCommandSpec().exitCodeOnInvalidInput();
    }
}
