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
final class CpuTensor extends RowMajorTensor<CpuTensor.Storage> {

    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The segment and the arena that owns it (null for an aliased mapped weight). */
    static final class Storage extends RowMajorTensor.Storage {
        final MemorySegment segment;
        final Arena arena;

        Storage(MemorySegment segment, Arena arena, DType dtype, boolean weight) {
            super(dtype, weight);
            this.segment = segment;
            this.arena = arena;
        }
    }

    CpuTensor(CpuBackend owner, Storage storage, String name, int rows, int cols, boolean view) {
        super(owner, storage, name, rows, cols, view);
    }

    private CpuTensor(CpuTensor of, int rows) {
        super(of, rows);
    }

    @Override
    protected Tensor view(int n) {
        return new CpuTensor(this, n);
    }

    /** Freed, or its backend closed (which releases every arena). */
    @Override
    protected boolean released() {
        return super.released() || ((CpuBackend) owner()).isClosed();
    }

    MemorySegment segment() {
        return storage.segment;
    }

    /** The arena that owns the segment, or null when the tensor aliases a mapped weight. */
    Arena arena() {
        return storage.arena;
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
