package ai.punica.backend.cpu;

import ai.punica.backend.DType;
import ai.punica.backend.RowMajorTensor;
import ai.punica.backend.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A tensor of the {@link CpuBackend}: a native {@link MemorySegment}, row-major with {@code cols} elements
 * per row. Activations are float32 in native byte order, 64-byte aligned, in an arena of their own.
 * Weights keep their checkpoint dtype and byte order (little-endian) and may alias a memory-mapped file
 * (then they have no arena and may be unaligned). Views made by {@link #firstRows} share the storage.
 */
final class CpuTensor extends RowMajorTensor {

    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Shared by a tensor and its views, so that freeing it invalidates all of them. */
    static final class Storage {
        final MemorySegment segment;
        final Arena arena;
        final DType dtype;
        final boolean weight;
        boolean freed;

        Storage(MemorySegment segment, Arena arena, DType dtype, boolean weight) {
            this.segment = segment;
            this.arena = arena;
            this.dtype = dtype;
            this.weight = weight;
        }
    }

    final CpuBackend owner;
    final Storage storage;

    CpuTensor(CpuBackend owner, Storage storage, String name, int rows, int cols, boolean view) {
        super(name, rows, cols, view);
        this.owner = owner;
        this.storage = storage;
    }

    @Override
    public DType dtype() {
        return storage.dtype;
    }

    @Override
    protected Tensor view(int n) {
        return new CpuTensor(owner, storage, name(), n, cols(), true);
    }

    MemorySegment segment() {
        return storage.segment;
    }

    /** Element {@code index} (row-major) of a weight or activation segment of {@code dtype}, as float. */
    static float element(MemorySegment segment, DType dtype, long index) {
        return switch (dtype) {
            case F32 -> segment.get(FLOAT_LE, index * 4);
            case BF16 -> DType.bf16ToFloat(segment.get(SHORT_LE, index * 2));
            case F16 -> DType.f16ToFloat(segment.get(SHORT_LE, index * 2));
        };
    }
}
