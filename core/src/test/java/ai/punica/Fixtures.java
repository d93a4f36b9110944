package ai.punica;

import java.nio.file.Files;
import java.nio.file.Path;

/** Locates the committed fixtures (fixtures/ at the repository root; see tools/fixtures/README.md). */
public final class Fixtures {
    private Fixtures() {
    }

    public static Path root() {
        String configured = System.getProperty("punica.repo.root");
        if (configured != null && Files.isDirectory(Path.of(configured, "fixtures"))) {
            return Path.of(configured, "fixtures");
        }
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            if (Files.isDirectory(dir.resolve("fixtures"))) {
                return dir.resolve("fixtures");
            }
        }
        throw new IllegalStateException("fixtures/ not found above " + Path.of("").toAbsolutePath()
                + "; set -Dpunica.repo.root");
    }

    public static Path model() {
        return root().resolve("model");
    }

    public static Path adapter(String name) {
        return root().resolve("adapters").resolve(name);
    }

    public static Path path(String first, String... more) {
        return root().resolve(Path.of(first, more));
    }
}
