package ai.punica.backend.cuda;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.punica.backend.DType;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;
import org.opentest4j.AssertionFailedError;

/** What every gpu-tagged test needs: the device or a skip, seeded bf16 data, and the relative error. */
final class GpuChecks {
    private GpuChecks() {
    }

    /**
     * A backend on the first GPU, or the test is skipped (aborted) with the reason there is none; prints a
     * "CHECK [label] device" line naming the device and how its kernels were loaded.
     */
    static CudaBackend openOrSkip(String label) {
        requireDevice();
        CudaBackend gpu = new CudaBackend();
        System.out.println("CHECK " + (label.isEmpty() ? "" : label + " ") + "device " + gpu.deviceDescription()
                + " kernels " + gpu.kernelOrigins());
        return gpu;
    }

    /** Skips (aborts) the test where there is no usable CUDA device, with the reason. */
    static void requireDevice() {
        assumeTrue(new CudaBackendProvider().available(), () -> "no usable CUDA device: "
                + CudaBackendProvider.unavailableReason());
    }

    /**
     * A second backend on the device (the test has checked there is one) with some switches changed from
     * this JVM's {@code -Dpunica.cuda.*} ones, e.g. {@code open(o -> o.fusedLora(false))}: tests compare the
     * paths a switch chooses by running the same data through two backends.
     */
    static CudaBackend open(UnaryOperator<CudaOptions.Builder> change) {
        return new CudaBackend(change.apply(CudaOptions.fromSystemProperties().toBuilder()).build());
    }

    /** {@code values − base}, element by element: what an op added to what was there. */
    static float[] added(float[] values, float[] base) {
        float[] d = new float[values.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = values[i] - base[i];
        }
        return d;
    }

    /** Uniform in [-scale, scale), rounded to bf16 (what the device stores), no exact zeros. */
    static float[] random(SplittableRandom rng, int n, double scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            double x = rng.nextDouble(-scale, scale);
            v[i] = DType.bf16ToFloat(DType.floatToBf16((float) (x == 0 ? scale / 3 : x)));
        }
        return v;
    }

    /** ‖got − want‖ / ‖want‖ over the first {@code want.length} values; infinite when got is not finite. */
    static double relativeError(float[] got, float[] want) {
        return relativeError(got, want, 0, want.length);
    }

    /** ‖got − want‖ / ‖want‖ over {@code n} values from {@code from}; infinite when got is not finite there. */
    static double relativeError(float[] got, float[] want, int from, int n) {
        double num = 0;
        double den = 0;
        for (int i = from; i < from + n; i++) {
            if (!Float.isFinite(got[i])) {
                return Double.POSITIVE_INFINITY;
            }
            double d = got[i] - want[i];
            num += d * d;
            den += (double) want[i] * want[i];
        }
        return Math.sqrt(num / Math.max(den, 1e-30));
    }

    /**
     * {@code got} equals {@code want} bit for bit (NaN equals NaN, 0 and -0 differ). AssertJ's
     * {@code containsExactly} is quadratic in the length (it diffs the arrays as lists) and took minutes on
     * logits-sized arrays; this is one pass, and names the first difference.
     */
    static void assertBitIdentical(String what, float[] got, float[] want) {
        if (Arrays.equals(got, want)) {
            return;
        }
        if (got.length != want.length) {
            throw new AssertionFailedError(what + ": " + got.length + " values, expected " + want.length);
        }
        int i = Arrays.mismatch(got, want);
        throw new AssertionFailedError(what + ": first difference at [" + i + "] of " + want.length + ": " + got[i]
                + " (0x" + Integer.toHexString(Float.floatToRawIntBits(got[i])) + "), expected " + want[i] + " (0x"
                + Integer.toHexString(Float.floatToRawIntBits(want[i])) + ")");
    }
}
