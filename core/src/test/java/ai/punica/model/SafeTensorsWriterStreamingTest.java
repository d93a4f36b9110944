package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DType;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Tensors added by shape, their data made only when the writer reaches them (a checkpoint larger than the heap). */
class SafeTensorsWriterStreamingTest {
    @TempDir
    Path dir;

    @Test
    void lazyTensorsAreMadeInNameOrderWhileWritingAndReadBackExactly() {
        List<String> made = new ArrayList<>();
        float[] a = {0.5f, -1.25f, 3f, 0.125f, -0.75f, 2f};
        float[] b = {1.5f, -2f};
        SafeTensorsWriter writer = new SafeTensorsWriter()
                .add("b", DType.F32, new long[] {2}, () -> {
                    made.add("b");
                    return SafeTensorsWriter.tensor("b", DType.F32, new long[] {2}, b);
                })
                .add("a", DType.BF16, new long[] {2, 3}, () -> {
                    made.add("a");
                    return SafeTensorsWriter.tensor("a", DType.BF16, new long[] {2, 3}, a);
                });
        assertThat(made).as("nothing is made before write").isEmpty();
        assertThat(writer.headerJson()).contains("\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}");
        Path file = dir.resolve("lazy.safetensors");
        writer.write(file);
        assertThat(made).containsExactly("a", "b");
        try (SafeTensors read = SafeTensors.open(file)) {
            assertThat(read.get("a").toFloatArray()).containsExactly(a);
            assertThat(read.get("b").toFloatArray()).containsExactly(b);
        }
    }

    @Test
    void dataOfAnotherShapeThanAnnouncedIsRefused() {
        SafeTensorsWriter writer = new SafeTensorsWriter().add("w", DType.F32, new long[] {2, 2},
                () -> SafeTensorsWriter.tensor("w", DType.F32, new long[] {4}, new float[] {1, 2, 3, 4}));
        assertThatThrownBy(() -> writer.write(dir.resolve("bad.safetensors")))
                .hasMessageContaining("the data made for 'w'").hasMessageContaining("expected F32 [2, 2]");
    }
}
