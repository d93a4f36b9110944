package ai.punica.backend;

import ai.punica.backend.cpu.CpuBackend;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.Locale;

/** Chooses a backend by name at start-up. */
public final class Backends {
    private Backends() {
    }

    /** {@code "cpu"} (Vector API when available; options from system properties) or {@code "reference"}. */
    public static Backend create(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "cpu" -> new CpuBackend();
            case "reference" -> new ReferenceBackend();
            default -> throw new IllegalArgumentException("unknown backend '" + name + "'; use cpu or reference");
        };
    }
}
