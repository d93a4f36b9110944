package ai.punica.router;

import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;
import java.util.List;

/**
 * The body of {@code GET /v1/router/state} (snake_case on the wire): the router's counts and each engine
 * process, whether it is up (and why not), and its load.
 */
@JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
record RouterState(String object, String policy, long failovers, long lostStreams, long migrations,
                   long migrationsDeclined, int queued, int queueCapacity, long queueRefusals,
                   List<EngineEntry> engines) {

    RouterState {
        engines = List.copyOf(engines);
    }

    /** One engine process; {@code problem} is null while it is available. */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    record EngineEntry(String url, boolean available, String problem, int requests, int maxRunning,
                       int freeKvPages, long placements) {
    }
}
