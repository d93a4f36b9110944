package ai.punica.parallel;

import ai.punica.backend.AlwaysAvailableProvider;
import ai.punica.backend.Backend;
import ai.punica.backend.cpu.CpuBackend;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The CPU backend, except that while {@link #ARMED} is set, {@code attention} called on a tensor-parallel rank
 * thread other than 0 ({@code punica-tp-rank-N}) throws: one rank failing in the middle of a step, between the
 * all-reduces. Registered for core's tests as backend "cpu-faulty-rank".
 */
final class FaultyRankBackend {
    static final AtomicBoolean ARMED = new AtomicBoolean();
    static final String MESSAGE = "injected failure on a tensor-parallel rank";

    private FaultyRankBackend() {
    }

    static Backend create() {
        CpuBackend inner = new CpuBackend(new CpuBackend.Options(1, true));
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    if (ARMED.get() && method.getName().equals("attention")
                            && Thread.currentThread().getName().startsWith("punica-tp-rank-")) {
                        throw new IllegalStateException(MESSAGE);
                    }
                    try {
                        return method.invoke(inner, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }

    /** The test-only provider (META-INF/services in core's test resources), never chosen by "auto". */
    public static final class Provider extends AlwaysAvailableProvider {
        public Provider() {
            super("cpu-faulty-rank", -1, FaultyRankBackend::create);
        }
    }
}
