package ai.punica.engine;

import java.util.Set;

/**
 * A snapshot of an engine for metrics and routing (the gauges Kubernetes inference gateways read:
 * vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc,
 * vllm:lora_requests_info).
 */
public record EngineStats(int running, int waiting, double kvCacheUsage, int kvPagesUsed, int kvPagesTotal,
                          Set<String> runningAdapters, Set<String> waitingAdapters, int loraSlots,
                          long promptTokens, long generationTokens, long preemptions, long steps,
                          long adapterLoads, long adapterEvictions) {

    public static EngineStats empty(int kvPagesTotal, int loraSlots) {
        return new EngineStats(0, 0, 0, 0, kvPagesTotal, Set.of(), Set.of(), loraSlots, 0, 0, 0, 0, 0, 0);
    }
}
