package ai.punica.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The machine's memory bandwidth as Java sees it, the ceiling for decode matmul: a vector sum that
 * reads a 512 MiB native buffer (bytes read / time), split over {@code threads}, and a
 * {@link MemorySegment#copy} of 256 MiB (bytes read + written / time).
 */
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 1)
public class MemoryBandwidthBench extends CpuJmhBench {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final long READ_BYTES = 512L << 20;
    static final long COPY_BYTES = 256L << 20;

    @Param({"1", "2"})
    public int threads;

    private Arena arena;
    private MemorySegment buffer;
    private MemorySegment copyFrom;
    private MemorySegment copyTo;
    private ExecutorService pool;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        buffer = arena.allocate(READ_BYTES, 64);
        copyFrom = arena.allocate(COPY_BYTES, 64);
        copyTo = arena.allocate(COPY_BYTES, 64);
        buffer.fill((byte) 1);
        copyFrom.fill((byte) 2);
        copyTo.fill((byte) 3);
        pool = Executors.newFixedThreadPool(threads);
    }

    /** Σ of all floats of the buffer, 4 accumulators per thread; read bandwidth = 512 MiB / time. */
    @Benchmark
    public float readSum() throws Exception {
        long part = READ_BYTES / threads;
        List<Future<Float>> sums = new ArrayList<>(threads);
        for (int t = 0; t < threads; t++) {
            MemorySegment slice = buffer.asSlice(t * part, part);
            sums.add(pool.submit(() -> sum(slice)));
        }
        float total = 0;
        for (Future<Float> s : sums) {
            total += s.get();
        }
        return total;
    }

    private static float sum(MemorySegment s) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        int step = 4 * F.vectorByteSize();
        int blocks = (int) (s.byteSize() / step);
        for (int b = 0; b < blocks; b++) {
            long o = (long) b * step;
            a0 = a0.add(FloatVector.fromMemorySegment(F, s, o, ByteOrder.nativeOrder()));
            a1 = a1.add(FloatVector.fromMemorySegment(F, s, o + F.vectorByteSize(), ByteOrder.nativeOrder()));
            a2 = a2.add(FloatVector.fromMemorySegment(F, s, o + 2L * F.vectorByteSize(), ByteOrder.nativeOrder()));
            a3 = a3.add(FloatVector.fromMemorySegment(F, s, o + 3L * F.vectorByteSize(), ByteOrder.nativeOrder()));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
    }

    /** copy bandwidth = 2 · 256 MiB / time (one thread). */
    @Benchmark
    public void copy() {
        MemorySegment.copy(copyFrom, 0, copyTo, 0, COPY_BYTES);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.shutdownNow();
        arena.close();
    }
}
