package ai.punica.backend.reference;

import ai.punica.backend.KvStorage;

/**
 * Paged KV memory of the {@link ReferenceBackend}: per layer one float array of keys and one of values,
 * slot-major: slot s (= page · pageSize + offset) holds {@code kvCols} floats at {@code s · kvCols}.
 */
record ReferenceKvStorage(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim,
                          float[][] keys, float[][] values) implements KvStorage {

    static ReferenceKvStorage allocate(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        long floats = (long) numPages * pageSize * numKvHeads * headDim;
        if (numLayers <= 0 || numPages <= 0 || pageSize <= 0 || numKvHeads <= 0 || headDim <= 0 || floats > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("allocateKv: " + numLayers + " layers × " + numPages + " pages × "
                    + pageSize + " tokens × " + numKvHeads + " heads × " + headDim + " is empty or too large for the reference backend");
        }
        return new ReferenceKvStorage(numLayers, numPages, pageSize, numKvHeads, headDim,
                new float[numLayers][(int) floats], new float[numLayers][(int) floats]);
    }

    int kvCols() {
        return numKvHeads * headDim;
    }
}
