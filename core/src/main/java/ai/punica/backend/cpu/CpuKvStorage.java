package ai.punica.backend.cpu;

import ai.punica.backend.KvStorage;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Paged KV memory of the {@link CpuBackend}, float32 in native memory: one segment of keys and one of
 * values for all layers. Token slot s (= page · pageSize + offset) of layer l holds {@code kvCols} floats
 * starting at element {@code l · layerStride + s · kvCols}, KV head g at {@code + g · headDim}.
 */
record CpuKvStorage(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim,
                    Arena arena, MemorySegment keys, MemorySegment values) implements KvStorage {

    int kvCols() {
        return numKvHeads * headDim;
    }

    /** Floats per layer: every slot of every page. */
    long layerStride() {
        return (long) numPages * pageSize * kvCols();
    }

    @Override
    public String toString() {
        return "CpuKvStorage[" + numLayers + " layers, " + numPages + " pages of " + pageSize + ", "
                + numKvHeads + " KV heads of " + headDim + "]";
    }
}
