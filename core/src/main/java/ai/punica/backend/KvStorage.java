package ai.punica.backend;

/**
 * Paged key/value memory of all layers on one backend: {@code numPages} pages of {@code pageSize}
 * tokens; each token stores {@code numKvHeads · headDim} keys and as many values per layer. Which
 * sequence owns which page is decided by the engine's KV manager, not here.
 */
public interface KvStorage {
    int numLayers();

    int numPages();

    int pageSize();

    int numKvHeads();

    int headDim();
}
