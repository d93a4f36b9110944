package ai.punica.cluster;

import ai.punica.engine.Continuation;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineLoad;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;

/** An engine in this process (one per GPU, or one of several CPU engines). */
public final class LocalEngineHandle implements EngineHandle {
    private final String name;
    private final Engine engine;

    public LocalEngineHandle(String name, Engine engine) {
        this.name = name;
        this.engine = engine;
    }

    public Engine engine() {
        return engine;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public EngineLoad load() {
        return engine.load();
    }

    @Override
    public boolean available() {
        return true;
    }

    @Override
    public void check(GenerationRequest request) {
        engine.check(request);
    }

    @Override
    public void submit(GenerationRequest request, GenerationListener listener) {
        engine.submit(request, listener);
    }

    @Override
    public void resume(Continuation continuation, GenerationListener listener, boolean preempted) {
        engine.resume(continuation, listener, preempted);
    }

    @Override
    public void cancel(String requestId) {
        engine.cancel(requestId);
    }
}
