package ai.punica.backend;

import java.util.function.Supplier;

/**
 * A provider for a backend that runs on any machine (it computes in host memory): the CPU and
 * reference backends register subclasses of this through {@code META-INF/services}.
 */
public abstract class AlwaysAvailableProvider implements BackendProvider {
    private final String name;
    private final int priority;
    private final Supplier<Backend> factory;

    protected AlwaysAvailableProvider(String name, int priority, Supplier<Backend> factory) {
        this.name = name;
        this.priority = priority;
        this.factory = factory;
    }

    @Override
    public final String name() {
        return name;
    }

    @Override
    public final boolean available() {
        return true;
    }

    @Override
    public final int priority() {
        return priority;
    }

    @Override
    public final Backend create() {
        return factory.get();
    }
}
