package ai.punica.backend;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.ServiceLoader;

/** Chooses a backend at start-up by name, or the best available one for "auto". */
public final class Backends {
    private Backends() {
    }

    /**
     * The providers registered on the class path ({@code META-INF/services}): core's own "cpu" and
     * "reference", and those of other modules ("cuda"), highest priority first. Registration keeps this
     * package free of its implementations.
     */
    public static List<BackendProvider> providers() {
        List<BackendProvider> all = new ArrayList<>();
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
}
