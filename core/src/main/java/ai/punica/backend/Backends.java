package ai.punica.backend;

import ai.punica.backend.cpu.CpuBackend;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;

/** Chooses a backend at start-up by name, or the best available one for "auto". */
public final class Backends {
    private Backends() {
    }

    /** Built-in providers plus those found on the class path. */
    public static List<BackendProvider> providers() {
        List<BackendProvider> all = new ArrayList<>();
        all.add(builtIn("cpu", 10, CpuBackend::new));
        all.add(builtIn("reference", 0, ReferenceBackend::new));
        ServiceLoader.load(BackendProvider.class).forEach(all::add);
        all.sort(Comparator.comparingInt(BackendProvider::priority).reversed());
        return all;
    }

    /**
     * @param name "auto", or a provider's name
     * @throws IllegalArgumentException naming the known backends when {@code name} is unknown or
     *                                  unavailable here
     */
    public static Backend create(String name) {
        return provider(name).create();
    }

    /**
     * The provider {@link #create} would use for {@code name} ("auto": the available one of highest
     * priority), without creating the backend.
     *
     * @throws IllegalArgumentException as {@link #create} does
     */
    public static BackendProvider provider(String name) {
        List<BackendProvider> all = providers();
        for (BackendProvider p : all) {
            if ((name == null || name.equals("auto")) ? p.available() : p.name().equals(name)) {
                if (!p.available()) {
                    throw new IllegalArgumentException("backend '" + name + "' is not available on this machine");
                }
                return p;
            }
        }
        if (name == null || name.equals("auto")) {
            throw new IllegalStateException("no backend is available");
        }
        throw new IllegalArgumentException("unknown backend '" + name + "'; known: "
                + all.stream().map(BackendProvider::name).toList() + " or auto");
    }

    private static BackendProvider builtIn(String name, int priority, java.util.function.Supplier<Backend> factory) {
        return new BackendProvider() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public boolean available() {
                return true;
            }

            @Override
            public int priority() {
                return priority;
            }

            @Override
            public Backend create() {
                return factory.get();
            }
        };
    }
}
