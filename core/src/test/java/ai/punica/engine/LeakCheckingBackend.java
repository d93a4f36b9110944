package ai.punica.engine;

import ai.punica.backend.AlwaysAvailableProvider;
import ai.punica.backend.Backend;
import ai.punica.backend.cpu.CpuBackend;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The CPU backend, counting the tensors it hands out and frees and whether it was closed, so a test can
 * tell that whoever made it released everything. Registered for core's tests as backend "cpu-leakcheck";
 * every one made is kept in {@link #made}.
 */
final class LeakCheckingBackend {
    /** What one backend saw. */
    static final class Counts {
        final AtomicInteger liveTensors = new AtomicInteger();
        volatile boolean closed;
        /** Tensors still live when close was called (-1 before close). */
        volatile int liveAtClose = -1;
    }

    static final List<Counts> made = new CopyOnWriteArrayList<>();

    private LeakCheckingBackend() {
    }

    static Backend create() {
        CpuBackend inner = new CpuBackend();
        Counts counts = new Counts();
        made.add(counts);
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    Object result;
                    try {
                        result = method.invoke(inner, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                    switch (method.getName()) {
                        case "allocate", "allocateLogits", "loadWeight", "concatRows" -> counts.liveTensors.incrementAndGet();
                        case "free" -> counts.liveTensors.decrementAndGet();
                        case "close" -> {
                            if (!counts.closed) {
                                counts.liveAtClose = counts.liveTensors.get();
                                counts.closed = true;
                            }
                        }
                        default -> {
                        }
                    }
                    return result;
                });
    }

    /** The test-only provider (META-INF/services in core's test resources), never chosen by "auto". */
    public static final class Provider extends AlwaysAvailableProvider {
        public Provider() {
            super("cpu-leakcheck", -1, LeakCheckingBackend::create);
        }
    }
}
