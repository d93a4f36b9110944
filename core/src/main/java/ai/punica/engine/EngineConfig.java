package ai.punica.engine;

/**
 * Sizes of one engine.
 *
 * @param maxBatchTokens   token budget of one step (decode rows + prefill chunk rows); chunked prefill
 *                         splits longer prompts across steps
 * @param maxRunning       most sequences in a step (the largest decode batch)
 * @param maxWaiting       most requests queued before new ones are refused (HTTP 429)
 * @param pageSize         tokens per KV page
 * @param kvCacheBytes     memory budget of the KV cache (the page count follows from it)
 * @param maxModelLen      longest sequence (prompt + output); 0 = the model's max_position_embeddings
 * @param loraSlots        adapters resident on the backend at once
 * @param maxLoraRank      largest adapter rank accepted
 * @param hostAdapterBytes byte budget of adapters kept in host memory
 */
public record EngineConfig(int maxBatchTokens, int maxRunning, int maxWaiting, int pageSize, long kvCacheBytes,
                           int maxModelLen, int loraSlots, int maxLoraRank, long hostAdapterBytes) {

    public EngineConfig {
        if (maxBatchTokens < 1 || maxRunning < 1 || maxWaiting < 0 || pageSize < 1 || kvCacheBytes < 1
                || loraSlots < 1 || maxLoraRank < 1 || hostAdapterBytes < 0 || maxModelLen < 0) {
            throw new IllegalArgumentException("engine sizes must be positive: " + this);
        }
        if (maxRunning > maxBatchTokens) {
            throw new IllegalArgumentException("maxRunning " + maxRunning + " exceeds maxBatchTokens "
                    + maxBatchTokens + ": every running sequence needs a row in a step");
        }
    }

    /** Defaults for a small CPU deployment. */
    public static EngineConfig defaults() {
        return new EngineConfig(256, 32, 1024, 16, 256L << 20, 0, 8, 64, 1L << 30);
    }

    /**
     * Defaults for an engine on a GPU: prefill chunks of 2048 tokens, up to 128 running sequences (decode
     * steps up to 128 rows replay as CUDA graphs), 32 adapter slots of rank up to 64 and 8 GiB of adapters in
     * host memory; the KV cache is sized from the device's memory ({@code KvCacheSizing}).
     */
    public static EngineConfig deviceDefaults() {
        return new EngineConfig(2048, 128, 1024, 16, 256L << 20, 0, 32, 64, 8L << 30);
    }

    public EngineConfig withKvCacheBytes(long bytes) {
        return new EngineConfig(maxBatchTokens, maxRunning, maxWaiting, pageSize, bytes, maxModelLen, loraSlots,
                maxLoraRank, hostAdapterBytes);
    }

    public EngineConfig withBatch(int tokens, int running) {
        return new EngineConfig(tokens, running, maxWaiting, pageSize, kvCacheBytes, maxModelLen, loraSlots,
                maxLoraRank, hostAdapterBytes);
    }

    public EngineConfig withLoraSlots(int slots) {
        return new EngineConfig(maxBatchTokens, maxRunning, maxWaiting, pageSize, kvCacheBytes, maxModelLen, slots,
                maxLoraRank, hostAdapterBytes);
    }

    public EngineConfig withMaxWaiting(int waiting) {
        return new EngineConfig(maxBatchTokens, maxRunning, waiting, pageSize, kvCacheBytes, maxModelLen, loraSlots,
                maxLoraRank, hostAdapterBytes);
    }

    public EngineConfig withPageSize(int tokens) {
        return new EngineConfig(maxBatchTokens, maxRunning, maxWaiting, tokens, kvCacheBytes, maxModelLen, loraSlots,
                maxLoraRank, hostAdapterBytes);
    }
}
