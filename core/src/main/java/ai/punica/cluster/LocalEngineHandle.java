package ai.punica.cluster;

import ai.punica.engine.Continuation;
import ai.punica.engine.Engine;
import ai.punica.engine.EngineLoad;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;

/** An engine in this process (one per GPU, or one of several CPU engines). */
public record LocalEngineHandle(String name, Engine engine) implements EngineHandle {

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
