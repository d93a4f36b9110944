package ai.punica.engine;

/**
 * The options of one engine, validated when made. Make one with {@link #builder()} (from
 * {@link #defaults()}) or {@link #toBuilder()}; every option is listed with its CLI flag in
 * docs/configuration.md.
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
 * @param batchInvariant   a request's output bits do not depend on which other requests share its steps: the
 *                         backend is created with fixed reduction orders ({@code --batch-invariant}; a backend
 *                         that cannot do that refuses at start)
 */
public record EngineConfig(int maxBatchTokens, int maxRunning, int maxWaiting, int pageSize, long kvCacheBytes,
                           int maxModelLen, int loraSlots, int maxLoraRank, long hostAdapterBytes,
                           boolean batchInvariant) {

    /** @throws IllegalArgumentException naming the first option out of range */
    public EngineConfig {
        atLeast("maxBatchTokens", maxBatchTokens, 1);
        atLeast("maxRunning", maxRunning, 1);
        atLeast("maxWaiting", maxWaiting, 0);
        atLeast("pageSize", pageSize, 1);
        atLeast("kvCacheBytes", kvCacheBytes, 1);
        atLeast("maxModelLen", maxModelLen, 0);
        atLeast("loraSlots", loraSlots, 1);
        atLeast("maxLoraRank", maxLoraRank, 1);
        atLeast("hostAdapterBytes", hostAdapterBytes, 0);
        if (maxRunning > maxBatchTokens) {
            throw new IllegalArgumentException("maxRunning " + maxRunning + " exceeds maxBatchTokens "
                    + maxBatchTokens + ": every running sequence needs a row in a step");
        }
    }

    /** Not batch-invariant. */
    public EngineConfig(int maxBatchTokens, int maxRunning, int maxWaiting, int pageSize, long kvCacheBytes,
                        int maxModelLen, int loraSlots, int maxLoraRank, long hostAdapterBytes) {
        this(maxBatchTokens, maxRunning, maxWaiting, pageSize, kvCacheBytes, maxModelLen, loraSlots, maxLoraRank,
                hostAdapterBytes, false);
    }

    private static void atLeast(String option, long value, long least) {
        if (value < least) {
            throw new IllegalArgumentException(option + " is " + value + "; it must be at least " + least);
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

    /** A builder starting from {@link #defaults()}. */
    public static Builder builder() {
        return defaults().toBuilder();
    }

    /** A builder starting from these options. */
    public Builder toBuilder() {
        return new Builder(this);
    }

    /** Options set one by one; {@link #build} validates them together. */
    public static final class Builder {
        private int maxBatchTokens;
        private int maxRunning;
        private int maxWaiting;
        private int pageSize;
        private long kvCacheBytes;
        private int maxModelLen;
        private int loraSlots;
        private int maxLoraRank;
        private long hostAdapterBytes;
        private boolean batchInvariant;

        private Builder(EngineConfig from) {
            maxBatchTokens = from.maxBatchTokens;
            maxRunning = from.maxRunning;
            maxWaiting = from.maxWaiting;
            pageSize = from.pageSize;
            kvCacheBytes = from.kvCacheBytes;
            maxModelLen = from.maxModelLen;
            loraSlots = from.loraSlots;
            maxLoraRank = from.maxLoraRank;
            hostAdapterBytes = from.hostAdapterBytes;
            batchInvariant = from.batchInvariant;
        }

        public Builder maxBatchTokens(int tokens) {
            this.maxBatchTokens = tokens;
            return this;
        }

        public Builder maxRunning(int sequences) {
            this.maxRunning = sequences;
            return this;
        }

        public Builder maxWaiting(int requests) {
            this.maxWaiting = requests;
            return this;
        }

        public Builder pageSize(int tokens) {
            this.pageSize = tokens;
            return this;
        }

        public Builder kvCacheBytes(long bytes) {
            this.kvCacheBytes = bytes;
            return this;
        }

        public Builder maxModelLen(int tokens) {
            this.maxModelLen = tokens;
            return this;
        }

        public Builder loraSlots(int slots) {
            this.loraSlots = slots;
            return this;
        }

        public Builder maxLoraRank(int rank) {
            this.maxLoraRank = rank;
            return this;
        }

        public Builder hostAdapterBytes(long bytes) {
            this.hostAdapterBytes = bytes;
            return this;
        }

        /** See {@link EngineConfig#batchInvariant()}. */
        public Builder batchInvariant(boolean invariant) {
            this.batchInvariant = invariant;
            return this;
        }

        /** @throws IllegalArgumentException naming the first option out of range */
        public EngineConfig build() {
            return new EngineConfig(maxBatchTokens, maxRunning, maxWaiting, pageSize, kvCacheBytes, maxModelLen,
                    loraSlots, maxLoraRank, hostAdapterBytes, batchInvariant);
        }
    }
}
