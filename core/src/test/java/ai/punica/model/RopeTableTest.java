package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.punica.backend.RopeTable;
import org.junit.jupiter.api.Test;
import java.util.List;

/** ropeTable() against straightforward double-precision formulas written from the papers / reference code. */
class RopeTableTest {

    private static ModelConfig llama(int headDim, double theta, RopeScaling scaling, int maxPositions) {
        return new ModelConfig("llama", 1000, headDim * 4, 64, 1, 4, 4, headDim, maxPositions, 1e-5f, theta, scaling,
                false, false, false, 0, -1, List.of(), "bfloat16");
    }

    private static double plain(double theta, int headDim, int i) {
        return 1.0 / Math.pow(theta, 2.0 * i / headDim);
    }

    private static void assertRelativelyClose(float actual, double expected, double tolerance, String what) {
        assertThat((double) actual).as(what).isCloseTo(expected, within(Math.abs(expected) * tolerance));
    }

    @Test
    void defaultRopeIsInverseThetaPowers() {
        RopeTable t = llama(128, 10000, null, 4096).ropeTable();
        assertThat(t.halfDim()).isEqualTo(64);
        assertThat(t.attentionFactor()).isEqualTo(1f);
        assertThat(t.invFreq(0)).isEqualTo(1f);
        for (int i = 0; i < 64; i++) {
            assertRelativelyClose(t.invFreq(i), plain(10000, 128, i), 1e-6, "invFreq[" + i + "]");
        }
    }

    @Test
    void linearScalingDividesEveryFrequency() {
        RopeTable t = llama(64, 10000, RopeScaling.linear(4.0), 8192).ropeTable();
        for (int i = 0; i < 32; i++) {
            assertRelativelyClose(t.invFreq(i), plain(10000, 64, i) / 4, 1e-6, "invFreq[" + i + "]");
        }
    }

    /**
     * Meta's apply_scaling (llama-models, Llama 3.1): keep high frequencies, divide low ones by the factor,
     * blend in between; written here per frequency in double precision.
     */
    @Test
    void llama3ScalingMatchesTheReferenceFormulaInEveryRegime() {
        double factor = 8, low = 1, high = 4;
        int original = 8192;
        RopeTable t = llama(128, 500000, RopeScaling.llama3(factor, low, high, original), 131072).ropeTable();
        assertThat(t.attentionFactor()).isEqualTo(1f);
        int kept = 0;
        int divided = 0;
        int blended = 0;
        for (int i = 0; i < 64; i++) {
            double freq = plain(500000, 128, i);
            double wavelen = 2 * Math.PI / freq;
            double expected;
            if (wavelen < original / high) {
                expected = freq;
                kept++;
            } else if (wavelen > original / low) {
                expected = freq / factor;
                divided++;
            } else {
                double smooth = (original / wavelen - low) / (high - low);
                expected = (1 - smooth) * freq / factor + smooth * freq;
                blended++;
            }
            assertRelativelyClose(t.invFreq(i), expected, 2e-6, "invFreq[" + i + "]");
        }
        // Llama 3.1's parameters exercise all three regimes.
        assertThat(kept).isPositive();
        assertThat(divided).isPositive();
        assertThat(blended).isPositive();
    }

    /** YaRN (Peng et al. 2023, eq. for the ramp γ): interpolate slow dimensions, extrapolate fast ones. */
    @Test
    void yarnBlendsInterpolationAndExtrapolationAndScalesAttention() {
        int headDim = 128;
        double theta = 1e6;
        double factor = 4;
        int original = 32768;
        RopeTable t = llama(headDim, theta, new RopeScaling("yarn", factor, 0, 0, original, 32, 1, null, null, null, true),
                original).ropeTable();
        assertThat((double) t.attentionFactor()).isCloseTo(0.1 * Math.log(factor) + 1, within(1e-6));

        double lowDim = Math.floor(headDim * Math.log(original / (32 * 2 * Math.PI)) / (2 * Math.log(theta)));
        double highDim = Math.ceil(headDim * Math.log(original / (1 * 2 * Math.PI)) / (2 * Math.log(theta)));
        lowDim = Math.max(lowDim, 0);
        highDim = Math.min(highDim, headDim - 1);
        for (int i = 0; i < headDim / 2; i++) {
            double freq = plain(theta, headDim, i);
            double ramp = Math.min(1, Math.max(0, (i - lowDim) / (highDim - lowDim)));
            double expected = freq / factor * ramp + freq * (1 - ramp);
            assertRelativelyClose(t.invFreq(i), expected, 2e-6, "invFreq[" + i + "]");
        }
        assertThat(t.invFreq(0)).isEqualTo(1f); // fastest dimension untouched
        assertRelativelyClose(t.invFreq(63), plain(theta, headDim, 63) / factor, 2e-6, "slowest dimension");
    }

    @Test
    void yarnUsesAnExplicitAttentionFactor() {
        RopeTable t = llama(64, 10000, new RopeScaling("yarn", 2, 0, 0, 2048, 32, 1, 1.5, null, null, true), 4096)
                .ropeTable();
        assertThat(t.attentionFactor()).isEqualTo(1.5f);
    }
}
