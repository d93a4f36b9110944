package ai.punica.backend.cuda;

import ai.punica.backend.KvStorage;

/**
 * Paged K/V of all layers in one device allocation: for each layer, K then V, each
 * {@code [numPages · pageSize slots][numKvHeads][headDim]} bf16. A slot's keys are one contiguous row,
 * exactly as they sit in the fused QKV activation, so appending is a row copy.
 */
record CudaKvStorage(DeviceAllocator owner, long ptr, int numLayers, int numPages, int pageSize, int numKvHeads,
                     int headDim) implements KvStorage {

    /** log2 of the page size, or -1 when it is not a power of two (the attention kernels then divide). */
    int pageShift() {
        return Integer.bitCount(pageSize) == 1 ? Integer.numberOfTrailingZeros(pageSize) : -1;
    }

    long slotsPerLayer() {
        return (long) numPages * pageSize;
    }

    long planeBytes() {
        return slotsPerLayer() * numKvHeads * headDim * 2L;
    }

    long keys(int layer) {
        return ptr + (2L * layer) * planeBytes();
    }

    long values(int layer) {
        return ptr + (2L * layer + 1) * planeBytes();
    }

    long totalBytes() {
        return 2L * numLayers * planeBytes();
    }
}
