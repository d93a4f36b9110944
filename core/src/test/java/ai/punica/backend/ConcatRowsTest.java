package ai.punica.backend;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.cpu.CpuBackend;
import ai.punica.backend.reference.ReferenceBackend;
import java.lang.foreign.MemorySegment;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ConcatRowsTest {

    private static TensorData vector(String name, float... values) {
        TensorData t = TensorData.of(name, DType.BF16, 1, values.length, values);
        MemorySegment copy = MemorySegment.ofArray(new byte[values.length * 2]);
        MemorySegment.copy(t.data(), 0, copy, 0, copy.byteSize());
        return new TensorData(name, DType.BF16, new long[] {values.length}, copy);
    }

    /** Qwen2-style fused q|k|v bias: vectors of different lengths become one row. */
    @ParameterizedTest
    @ValueSource(strings = {"cpu", "reference"})
    void vectorsOfDifferentLengthsJoinIntoOneRow(String name) {
        try (Backend backend = name.equals("cpu") ? new CpuBackend() : new ReferenceBackend()) {
            Tensor bias = backend.concatRows("qkv_bias", List.of(vector("q", 1.5f, -2f, 3f, 0.25f),
                    vector("k", 5f, 6f), vector("v", -7f, 8f)));
            assertThat(bias.rows()).isEqualTo(1);
            assertThat(bias.cols()).isEqualTo(8);
            // out = x·0 + bias reads the joined vector back through matmul's bias path
            Tensor x = backend.allocate(1, 3);
            backend.upload(new float[] {0.5f, -1f, 2f}, x);
            Tensor w = backend.loadWeight(TensorData.of("w", DType.F32, 8, 3, new float[24]));
            Tensor out = backend.allocate(1, 8);
            backend.matmul(x, w, bias, out);
            float[] host = new float[8];
            backend.download(out, host);
            assertThat(host).containsExactly(1.5f, -2f, 3f, 0.25f, 5f, 6f, -7f, 8f);
        }
    }
}
