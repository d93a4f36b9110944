package ai.punica.cluster;

import ai.punica.engine.EngineLoad;
import ai.punica.engine.GenerationRequest;

/**
 * One engine as the scheduler over engines drives it: in this process ({@link LocalEngineHandle}) or
 * behind HTTP in another one. Calls return at once; output arrives on the listener.
 */
public interface EngineHandle extends GenerationService {

    /** A short name for logs and the {@code engine} metric label ("0", "gpu1", "10.0.0.7:8000"). */
    String name();

    /** The engine's latest published load. */
    EngineLoad load();

    /** False while the engine cannot take requests (unreachable, unhealthy, stopping). */
    boolean available();

    /** Checks a request as the engine would, without queuing it; throws its EngineException. */
    void check(GenerationRequest request);

}
