package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** The KV cache's layout numbers the attention launches pass (CPU: no device needed). */
class CudaKvStorageTest {
    @Test
    void pageShiftIsLog2OfAPowerOfTwoPageSizeElseMinusOne() {
        assertThat(kv(1).pageShift()).isZero();
        assertThat(kv(16).pageShift()).isEqualTo(4);
        assertThat(kv(256).pageShift()).isEqualTo(8);
        assertThat(kv(12).pageShift()).as("the kernels divide").isEqualTo(-1);
        assertThat(kv(48).pageShift()).isEqualTo(-1);
    }

    @Test
    void eachLayerHoldsItsKeysThenItsValues() {
        CudaKvStorage kv = new CudaKvStorage(null, 1L << 20, 3, 4, 16, 2, 64);
        long plane = 4L * 16 * 2 * 64 * 2;
        assertThat(kv.planeBytes()).isEqualTo(plane);
        assertThat(kv.keys(0)).isEqualTo(1L << 20);
        assertThat(kv.values(0)).isEqualTo((1L << 20) + plane);
        assertThat(kv.keys(2)).isEqualTo((1L << 20) + 4 * plane);
        assertThat(kv.totalBytes()).isEqualTo(6 * plane);
    }

    private static CudaKvStorage kv(int pageSize) {
        return new CudaKvStorage(null, 0, 1, 4, pageSize, 2, 64);
    }
}
