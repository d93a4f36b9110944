package ai.punica.backend;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class DTypeTest {

    @Test
    void bf16RoundsToNearestEvenAndRoundTrips() {
        // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even (1.0).
        assertThat(DType.bf16ToFloat(DType.floatToBf16(1f + 0x1p-8f))).isEqualTo(1f);
        assertThat(DType.bf16ToFloat(DType.floatToBf16(1f + 0x1p-8f + 0x1p-20f))).isEqualTo(1f + 0x1p-7f);
        assertThat(Float.isNaN(DType.bf16ToFloat(DType.floatToBf16(Float.NaN)))).isTrue();
        SplittableRandom random = new SplittableRandom(7);
        for (int i = 0; i < 10_000; i++) {
            float x = (float) random.nextDouble(-1e4, 1e4);
            float back = DType.bf16ToFloat(DType.floatToBf16(x));
            assertThat(Math.abs(back - x)).isLessThanOrEqualTo(Math.abs(x) * 0x1p-8f);
            assertThat(DType.bf16ToFloat(DType.floatToBf16(back))).isEqualTo(back);
        }
    }

    @Test
    void parsesSafetensorsNames() {
        assertThat(DType.fromSafetensors("BF16")).isEqualTo(DType.BF16);
        assertThat(DType.fromSafetensors("F16")).isEqualTo(DType.F16);
        assertThat(DType.fromSafetensors("I8")).isNull();
    }
}
