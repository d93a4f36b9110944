package ai.punica.backend;

import java.util.List;

/**
 * Where each weight of one block lies: the weights one after another in the order given, each stored as
 * {@code dtype} and starting at a multiple of {@code alignment} bytes from the block's start; {@code bytes} is
 * the block's size (the last weight's end, rounded up to the alignment). An adapter slot's device block and the
 * adapter's pinned host copy ({@link PinnedHostMemory}) share one layout, so that the upload is one copy of the
 * whole block instead of one per weight.
 *
 * @param offsets byte offset of weight i
 * @param bytes   size of the block
 */
public record WeightBlockLayout(long[] offsets, long bytes) {

    public WeightBlockLayout {
        offsets = offsets.clone();
    }

    /** The layout of {@code weights} stored as {@code dtype}, each at a multiple of {@code alignment} bytes. */
    public static WeightBlockLayout of(List<TensorData> weights, DType dtype, long alignment) {
        if (alignment <= 0 || Long.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment must be a power of two, got " + alignment);
        }
        long[] offsets = new long[weights.size()];
        long bytes = 0;
        for (int i = 0; i < offsets.length; i++) {
            offsets[i] = bytes;
            bytes = (bytes + weights.get(i).elementCount() * dtype.byteSize() + alignment - 1) & -alignment;
        }
        return new WeightBlockLayout(offsets, bytes);
    }

    @Override
    public long[] offsets() {
        return offsets.clone();
    }

    /** Byte offset of weight {@code i}. */
    public long offset(int i) {
        return offsets[i];
    }

    public int count() {
        return offsets.length;
    }
}
