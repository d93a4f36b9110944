package ai.punica.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of the {@code punica} command. */
@Command(name = "punica", mixinStandardHelpOptions = true, version = "Punica-J 0.1.0",
        description = "Multi-tenant LoRA serving for Llama-family models.",
        subcommands = {GenerateCommand.class, ServeCommand.class, RouterCommand.class})
public final class Main {
    public static void main(String[] args) {
        System.exit(new CommandLine(new Main()).execute(args));
    }
}
