package ai.punica.cli;

import java.nio.file.Path;

/** Where the bundled demo model and its adapters live. */
final class Defaults {
    private Defaults() {
    }

    static Path home() {
        String home = System.getProperty("punica.home");
        return Path.of(home != null ? home : ".").toAbsolutePath().normalize();
    }

    static Path demoModel() {
        return home().resolve("fixtures/model");
    }

    static Path demoAdapters() {
        return home().resolve("fixtures/adapters");
    }
}
