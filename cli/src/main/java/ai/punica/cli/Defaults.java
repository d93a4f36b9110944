package ai.punica.cli;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

/** Where the bundled demo model lives, and adapter discovery. */
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

    /** Each subdirectory with an adapter_config.json is an adapter named after the directory. */
    static Map<String, Path> adaptersUnder(Path root) {
        Map<String, Path> out = new TreeMap<>();
        if (!Files.isDirectory(root)) {
            return out;
        }
        try (Stream<Path> dirs = Files.list(root)) {
            dirs.filter(d -> Files.isRegularFile(d.resolve("adapter_config.json")))
                    .forEach(d -> out.put(d.getFileName().toString(), d));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list adapters under " + root, e);
        }
        return out;
    }
}
