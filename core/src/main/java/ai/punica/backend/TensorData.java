package ai.punica.backend;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;

/**
 * A tensor on the host as stored in a checkpoint: row-major, little-endian, {@code data} is usually a
 * read-only slice of a memory-mapped file (no copy).
 */
public record TensorData(String name, DType dtype, long[] shape, MemorySegment data) {

    private static final ValueLayout.OfShort SHORT_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public TensorData {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public long dim(int i) {
        return shape[i];
    }

    public long elementCount() {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    /**
     * {rows, cols} of this tensor as a backend matrix: a 2-D tensor as it is, a 1-D one (norm weight,
     * bias) as a single row.
     *
     * @throws IllegalArgumentException naming {@code op} and the tensor when it is neither
     */
    public int[] matrixShape(String op) {
        if (shape.length == 1) {
            return new int[] {1, Math.toIntExact(shape[0])};
        }
        if (shape.length == 2) {
            return new int[] {Math.toIntExact(shape[0]), Math.toIntExact(shape[1])};
        }
        throw new IllegalArgumentException(op + ": " + this + " is not 1-D or 2-D");
    }

    /** Element {@code i} (flat index) as float, whatever the stored dtype. */
    public float getFloat(long i) {
        return switch (dtype) {
            case F32 -> data.get(FLOAT_LE, i * 4);
            case BF16 -> DType.bf16ToFloat(data.get(SHORT_LE, i * 2));
            case F16 -> DType.f16ToFloat(data.get(SHORT_LE, i * 2));
        };
    }

    /** A copy of all elements as floats (for small tensors, tests and references). */
    public float[] toFloatArray() {
        long n = elementCount();
        if (n > Integer.MAX_VALUE) {
            throw new IllegalStateException("tensor " + name + " has " + n + " elements, too many for a float[]");
        }
        float[] out = new float[(int) n];
        for (int i = 0; i < out.length; i++) {
            out[i] = getFloat(i);
        }
        return out;
    }

    /** A 2-D tensor in a fresh heap segment, from floats, stored as {@code dtype}. */
    public static TensorData of(String name, DType dtype, long rows, long cols, float[] values) {
        return of(name, dtype, new long[] {rows, cols}, values);
    }

    /** A tensor of any rank in a fresh heap segment, from floats (row-major), stored as {@code dtype}. */
    public static TensorData of(String name, DType dtype, long[] shape, float[] values) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        if (n != values.length) {
            throw new IllegalArgumentException(name + ": " + values.length + " values for shape " + Arrays.toString(shape));
        }
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * dtype.byteSize()]);
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> seg.set(FLOAT_LE, i * 4L, values[i]);
                case BF16 -> seg.set(SHORT_LE, i * 2L, DType.floatToBf16(values[i]));
                case F16 -> seg.set(SHORT_LE, i * 2L, DType.floatToF16(values[i]));
            }
        }
        return new TensorData(name, dtype, shape, seg);
    }

    /**
     * Weights stacked along rows (fused QKV, fused gate/up), as {@link TensorMemory#concatRows} defines it: the
     * parts' rows in order in one {@code [Σrows, cols]} tensor (a 1-D part counts as one row), or, when every
     * part is 1-D (biases), the parts end to end in one 1-D tensor. The parts are copied into one segment from
     * {@code into} (an arena for native memory).
     *
     * @throws IllegalArgumentException naming the tensor and the part when the parts' dtypes or columns differ
     */
    public static TensorData concatRows(String name, List<TensorData> parts, SegmentAllocator into) {
        String op = "concatRows " + name;
        if (parts.isEmpty()) {
            throw new IllegalArgumentException(op + ": no parts");
        }
        TensorData first = parts.getFirst();
        boolean vectors = parts.stream().allMatch(p -> p.rank() == 1);
        int cols = first.matrixShape(op)[1];
        long rows = 0;
        long elements = 0;
        for (TensorData part : parts) {
            int[] shape = part.matrixShape(op);
            if (part.dtype() != first.dtype() || (!vectors && shape[1] != cols)) {
                throw new IllegalArgumentException(op + ": " + part + " does not match " + first
                        + " (same dtype and columns needed)");
            }
            rows += shape[0];
            elements += (long) shape[0] * shape[1];
        }
        long bytes = elements * first.dtype().byteSize();
        MemorySegment data = into.allocate(Math.max(1, bytes), 64).asSlice(0, bytes);
        long offset = 0;
        for (TensorData part : parts) {
            long partBytes = part.elementCount() * part.dtype().byteSize();
            MemorySegment.copy(part.data(), 0, data, offset, partBytes);
            offset += partBytes;
        }
        return new TensorData(name, first.dtype(), vectors ? new long[] {elements} : new long[] {rows, cols}, data);
    }

    /** {@link #concatRows(String, List, SegmentAllocator)} into a fresh heap segment. */
    public static TensorData concatRows(String name, List<TensorData> parts) {
        return concatRows(name, parts, (bytes, alignment) -> MemorySegment.ofArray(new byte[Math.toIntExact(bytes)]));
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape);
    }
}
