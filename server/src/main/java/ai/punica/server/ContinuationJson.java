package ai.punica.server;

import ai.punica.engine.Continuation;
import java.util.List;

/**
 * The data of a {@code punica.preempted} SSE event (docs/cluster.md, "Migration across processes"): the request's
 * {@link Continuation} where the engine preempted it, with the response's {@code id} and {@code created} (a router
 * that has relayed no frame yet learns them here). Sampling parameters are not repeated: the router has the
 * original request, and {@code POST /v1/engine/continue} re-parses it.
 */
record ContinuationJson(String object, String id, long created, String requestId, String adapter,
                        List<Integer> promptTokenIds, List<Integer> generatedTokenIds, long seed, long randomDraws) {

    static ContinuationJson of(Continuation c, String id, long created) {
        return new ContinuationJson("engine.continuation", id, created, c.requestId(), c.adapter(),
                boxed(c.promptTokens()), boxed(c.generatedTokens()), c.seed(), c.randomDraws());
    }

    private static List<Integer> boxed(int[] tokens) {
        return java.util.Arrays.stream(tokens).boxed().toList();
    }
}
