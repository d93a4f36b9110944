package ai.punica.bench;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

/** Random weights in native memory, as a memory-mapped checkpoint would hold them. */
final class BenchWeights {
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private BenchWeights() {
    }

    /** A [rows, cols] weight of uniform values in [-scale, scale), stored as dtype in native memory. */
    static TensorData random(String name, DType dtype, int rows, int cols, double scale, SplittableRandom random, Arena arena) {
        long n = (long) rows * cols;
        MemorySegment data = arena.allocate(n * dtype.byteSize(), 64);
        for (long i = 0; i < n; i++) {
            float v = (float) random.nextDouble(-scale, scale);
            switch (dtype) {
                case F32 -> data.set(FLOAT_LE, 4 * i, v);
                case BF16 -> data.set(SHORT_LE, 2 * i, DType.floatToBf16(v));
                case F16 -> data.set(SHORT_LE, 2 * i, DType.floatToF16(v));
            }
        }
        return new TensorData(name, dtype, new long[] {rows, cols}, data);
    }

    static float[] random(int n, SplittableRandom random) {
        float[] values = new float[n];
        for (int i = 0; i < n; i++) {
            values[i] = (float) random.nextDouble(-1, 1);
        }
        return values;
    }
}
