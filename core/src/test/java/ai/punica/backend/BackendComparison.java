package ai.punica.backend;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import ai.punica.backend.cpu.CpuBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/**
 * What the backend tests share: the CPU backend variants under test, seeded random data (never zeros),
 * weights in host memory both on the heap and native (unaligned, as a slice of a mapped file can be),
 * NaN poisoning of outputs, and the comparison with its stated error measures.
 */
public final class BackendComparison {
    private BackendComparison() {
    }

    /** A CPU backend configuration under test, named for the test report. */
    public record Variant(String label, CpuBackend.Options options) {
        public CpuBackend create() {
            return new CpuBackend(options);
        }

        @Override
        public String toString() {
            return label;
        }
    }

    /** Vector and scalar kernels, with a pool (work split into pieces) and on one thread (inline). */
    public static Stream<Variant> variants() {
        return Stream.of(
                new Variant("vector, 2 threads", new CpuBackend.Options(2, true)),
                new Variant("scalar, 2 threads", new CpuBackend.Options(2, false)),
                new Variant("vector, 1 thread", new CpuBackend.Options(1, true)));
    }

    /** Uniform in [-scale, scale) without exact zeros. */
    public static float[] random(SplittableRandom random, int n, double scale) {
        float[] values = new float[n];
        for (int i = 0; i < n; i++) {
            double v = random.nextDouble(-scale, scale);
            values[i] = (float) (v == 0 ? scale / 3 : v);
        }
        return values;
    }

    public static float[] nans(int n) {
        float[] values = new float[n];
        Arrays.fill(values, Float.NaN);
        return values;
    }

    /**
     * A weight stored as {@code dtype}. {@code nativeOffset} &lt; 0: on the Java heap; otherwise in native
     * memory starting {@code nativeOffset} bytes into a larger segment (odd offsets give unaligned data,
     * as a tensor in a memory-mapped safetensors file may be).
     */
    public static TensorData weight(String name, DType dtype, int rows, int cols, float[] values, int nativeOffset) {
        TensorData heap = TensorData.of(name, dtype, rows, cols, values);
        if (nativeOffset < 0) {
            return heap;
        }
        long bytes = heap.data().byteSize();
        MemorySegment block = Arena.ofAuto().allocate(bytes + nativeOffset + 8, 64);
        MemorySegment slice = block.asSlice(nativeOffset, bytes);
        slice.copyFrom(heap.data());
        return new TensorData(name, dtype, new long[] {rows, cols}, slice.asReadOnly());
    }

    /** The float values a weight of {@code dtype} really holds (after rounding to that dtype). */
    public static float[] rounded(DType dtype, float[] values) {
        return TensorData.of("rounded", dtype, 1, values.length, values).toFloatArray();
    }

    /**
     * Asserts {@code actual} matches {@code expected}: no NaN where the reference has none, relative
     * error ‖actual − expected‖₂ / ‖expected‖₂ ≤ relTolerance and max |actual − expected| ≤ absTolerance.
     */
    public static void assertClose(String what, float[] actual, float[] expected, int n, double relTolerance,
                                   double absTolerance) {
        double diff2 = 0;
        double ref2 = 0;
        double maxAbs = 0;
        int worst = -1;
        for (int i = 0; i < n; i++) {
            if (Float.isNaN(actual[i]) != Float.isNaN(expected[i])) {
                fail(what + ": element " + i + " is " + actual[i] + ", expected " + expected[i]
                        + " (a NaN means the element was not written)");
            }
            double d = (double) actual[i] - expected[i];
            diff2 += d * d;
            ref2 += (double) expected[i] * expected[i];
            if (Math.abs(d) > maxAbs) {
                maxAbs = Math.abs(d);
                worst = i;
            }
        }
        double rel = ref2 == 0 ? Math.sqrt(diff2) : Math.sqrt(diff2 / ref2);
        String detail = what + ": relative error " + rel + " (tolerance " + relTolerance + "), max abs error "
                + maxAbs + " at " + worst + " (tolerance " + absTolerance + ")"
                + (worst >= 0 ? ", actual " + actual[worst] + " expected " + expected[worst] : "");
        assertThat(rel).as(detail).isLessThanOrEqualTo(relTolerance);
        assertThat(maxAbs).as(detail).isLessThanOrEqualTo(absTolerance);
    }

    /** Max |x| over the first n elements. */
    public static double maxAbs(float[] x, int n) {
        double max = 0;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, Math.abs(x[i]));
        }
        return max;
    }

    /** Uploads a copy of values into a new activation of each backend. */
    public static Tensor upload(Backend backend, int rows, int cols, float[] values) {
        Tensor t = backend.allocate(rows, cols);
        backend.upload(values, t);
        return t;
    }

    public static float[] download(Backend backend, Tensor t) {
        float[] out = new float[t.rows() * t.cols()];
        backend.download(t, out);
        return out;
    }
}
