package ai.punica.cli;

import picocli.CommandLine.Option;

/**
 * {@code --backend}, mixed into {@code punica generate} and {@code punica serve}: both take the same backend
 * names, listed here once.
 */
final class BackendOption {
    @Option(names = "--backend", defaultValue = "auto", description = "auto, cpu, reference or cuda.")
    String backend; // the field's name is the help's <backend>

    /** The backend's name as given (auto without --backend): what {@code Backends.provider} takes. */
    String name() {
        return backend;
    }
}
