package ai.punica.backend;

import static ai.punica.backend.BackendComparison.random;
import static ai.punica.backend.BackendComparison.upload;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.cpu.CpuBackend;
import ai.punica.backend.reference.ReferenceBackend;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Bad inputs fail the same way on every backend: IllegalArgumentException naming op, tensor and shapes. */
class BackendArgumentChecksTest {

    static Stream<Supplier<Backend>> backends() {
        return Stream.of(ReferenceBackend::new, () -> new CpuBackend(new CpuBackend.Options(2, true)),
                () -> new CpuBackend(new CpuBackend.Options(1, false)));
    }

    private static TensorData w(int rows, int cols) {
        return TensorData.of("model.w", DType.BF16, rows, cols, random(new SplittableRandom(rows * 7L + cols), rows * cols, 1));
    }

    @ParameterizedTest
    @MethodSource("backends")
    void matmulShapeMismatchNamesOpTensorAndShapes(Supplier<Backend> factory) {
        try (Backend b = factory.get()) {
            Tensor x = b.allocate(3, 4095);
            Tensor weight = b.loadWeight(w(8, 4096));
            assertThatThrownBy(() -> b.matmul(x, weight, null, b.allocate(3, 8)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("matmul")
                    .hasMessageContaining("[3, 4095]")
                    .hasMessageContaining("model.w [8, 4096] BF16");
            Tensor x2 = b.allocate(3, 4096);
            assertThatThrownBy(() -> b.matmul(x2, weight, null, b.allocate(3, 9)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("out").hasMessageContaining("[3, 8]");
        }
    }

    @ParameterizedTest
    @MethodSource("backends")
    void weightWhereActivationIsNeededIsRejected(Supplier<Backend> factory) {
        try (Backend b = factory.get()) {
            Tensor weight = b.loadWeight(w(4, 4));
            assertThatThrownBy(() -> b.matmul(weight, weight, null, b.allocate(4, 4)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("matmul: x model.w [4, 4] BF16");
            assertThatThrownBy(() -> b.add(b.allocate(4, 4), b.allocate(4, 4), weight))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("add: out");
        }
    }

    @ParameterizedTest
    @MethodSource("backends")
    void foreignAndFreedTensorsAreRejected(Supplier<Backend> factory) {
        try (Backend b = factory.get(); Backend other = new ReferenceBackend()) {
            Tensor foreign = other.allocate(2, 2);
            assertThatThrownBy(() -> b.add(foreign, b.allocate(2, 2), b.allocate(2, 2)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("add: a").hasMessageContaining("not made by");
            Tensor t = upload(b, 2, 2, new float[] {1, 2, 3, 4});
            b.free(t);
            assertThatThrownBy(() -> b.download(t, new float[4]))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("freed");
            Tensor u = b.allocate(4, 2);
            assertThatThrownBy(() -> b.free(u.firstRows(2)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("view");
            Tensor view = u.firstRows(3);
            b.free(u);
            assertThatThrownBy(() -> b.add(view, view, view))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("add: a").hasMessageContaining("freed");
        }
    }

    @ParameterizedTest
    @MethodSource("backends")
    void gathersSwigluAndTransfersNameTheBadIndexOrSize(Supplier<Backend> factory) {
        try (Backend b = factory.get()) {
            Tensor table = b.loadWeight(w(5, 4));
            assertThatThrownBy(() -> b.embedding(table, new int[] {0, 5}, b.allocate(2, 4)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("embedding: tokenIds[1] = 5 is outside table model.w [5, 4]");
            Tensor x = b.allocate(3, 4);
            assertThatThrownBy(() -> b.gatherRows(x, new int[] {2, -1}, b.allocate(2, 4)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("gatherRows: rows[1] = -1");
            assertThatThrownBy(() -> b.swiglu(b.allocate(2, 5), b.allocate(2, 2)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("swiglu: gateUp").hasMessageContaining("odd");
            assertThatThrownBy(() -> b.upload(new float[11], x))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("upload: 11 floats for dst")
                    .hasMessageContaining("(12 needed)");
            assertThatThrownBy(() -> b.download(x, new float[2]))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("download: 2 floats for src");
            assertThatThrownBy(() -> b.concatRows("model.qkv", java.util.List.of(w(4, 4), w(4, 5))))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("concatRows model.qkv").hasMessageContaining("same dtype and columns");
        }
    }

    @ParameterizedTest
    @MethodSource("backends")
    void attentionRejectsPagesOutsideTheStorage(Supplier<Backend> factory) {
        try (Backend b = factory.get()) {
            KvStorage kv = b.allocateKv(1, 4, 2, 1, 4);
            Tensor qkv = b.allocate(1, 12);
            AttentionBatch batch = new AttentionBatch(new int[] {0, 1}, new int[] {3}, new int[] {0, 2}, new int[] {1, 9},
                    new int[] {2}, 2);
            assertThatThrownBy(() -> b.attention(qkv, kv, 0, batch, new AttentionShape(1, 1, 4, 0.5f, 0), b.allocate(1, 4)))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("attention: pageTables[1] = 9");
            assertThatThrownBy(() -> b.appendKv(kv, 0, qkv, 4, 8, new int[] {8}))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("appendKv: slotMapping[0] = 8");
        }
    }

    @ParameterizedTest
    @MethodSource("backends")
    void sgmvRejectsUnknownSlotsAndWrongRanks(Supplier<Backend> factory) {
        try (Backend b = factory.get()) {
            LoraWeights lora = LoraWeights.empty(2);
            lora.a()[0] = b.loadWeight(w(4, 16));
            lora.b()[0] = b.loadWeight(w(8, 4));
            lora.rank()[0] = 8;
            Tensor x = b.allocate(3, 16);
            Tensor v = b.allocate(3, 8);
            assertThatThrownBy(() -> b.sgmvShrink(x, lora, new Segments(new int[] {0, 3}, new int[] {2}), v))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("sgmvShrink: segment 0 names slot 2");
            assertThatThrownBy(() -> b.sgmvShrink(x, lora, new Segments(new int[] {0, 3}, new int[] {0}), v))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("lora A of slot 0 model.w [4, 16]");
        }
    }
}
