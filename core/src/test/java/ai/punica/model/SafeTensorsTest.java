package ai.punica.model;

import static ai.punica.model.SafeTensorsFiles.randomValues;
import static ai.punica.model.SafeTensorsFiles.writeRaw;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsTest {

    @TempDir
    Path dir;

    private Path writeThreeDtypes(Path file) {
        new SafeTensorsWriter()
                .add("a.f32", DType.F32, new long[] {3, 4}, randomValues(1, 12))
                .add("b.bf16", DType.BF16, new long[] {2, 3, 5}, randomValues(2, 30))
                .add("c.f16", DType.F16, new long[] {7}, randomValues(3, 7))
                .add("d.empty", DType.F32, new long[] {0, 4}, new float[0])
                .metadata("format", "pt")
                .write(file);
        return file;
    }

    @Test
    void readsEveryDtypeBackAsSlicesOfTheMapping() {
        Path file = writeThreeDtypes(dir.resolve("model.safetensors"));
        try (SafeTensors st = SafeTensors.open(file)) {
            assertThat(st.names()).containsExactly("a.f32", "b.bf16", "c.f16", "d.empty");
            assertThat(st.metadata()).containsEntry("format", "pt");
            assertThat(st.file()).isEqualTo(file);

            TensorData a = st.get("a.f32");
            assertThat(a.dtype()).isEqualTo(DType.F32);
            assertThat(a.shape()).containsExactly(3, 4);
            assertThat(a.toFloatArray()).containsExactly(randomValues(1, 12));
            assertThat(a.data().isReadOnly()).isTrue();
            assertThat(a.data().isMapped()).isTrue();

            float[] expectedBf16 = randomValues(2, 30);
            for (int i = 0; i < expectedBf16.length; i++) {
                expectedBf16[i] = DType.bf16ToFloat(DType.floatToBf16(expectedBf16[i]));
            }
            TensorData b = st.get("b.bf16");
            assertThat(b.shape()).containsExactly(2, 3, 5);
            assertThat(b.toFloatArray()).containsExactly(expectedBf16);

            float[] expectedF16 = randomValues(3, 7);
            for (int i = 0; i < expectedF16.length; i++) {
                expectedF16[i] = DType.f16ToFloat(DType.floatToF16(expectedF16[i]));
            }
            assertThat(st.get("c.f16").toFloatArray()).containsExactly(expectedF16);
            assertThat(st.get("d.empty").elementCount()).isZero();
        }
    }

    @Test
    void writerPadsTheHeaderToEightBytesAsPythonDoes() throws IOException {
        Path file = writeThreeDtypes(dir.resolve("x.safetensors"));
        byte[] bytes = Files.readAllBytes(file);
        long headerLength = java.nio.ByteBuffer.wrap(bytes, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        assertThat(headerLength % 8).isZero();
        assertThat(bytes[(int) (8 + headerLength - 1)]).isIn((byte) ' ', (byte) '}');
    }

    @Test
    void missingTensorNamesTheFileAndTheTensor() {
        Path file = writeThreeDtypes(dir.resolve("model.safetensors"));
        try (SafeTensors st = SafeTensors.open(file)) {
            assertThat(st.contains("lm_head.weight")).isFalse();
            assertThatThrownBy(() -> st.get("lm_head.weight"))
                    .isInstanceOf(ModelFormatException.class)
                    .hasMessageContaining(file.toString())
                    .hasMessageContaining("no tensor named 'lm_head.weight'");
        }
    }

    @Test
    void unsupportedDtypeIsListedButRefusedByGet() {
        Path file = writeRaw(dir.resolve("mixed.safetensors"),
                "{\"scales\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                        + "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        try (SafeTensors st = SafeTensors.open(file)) {
            assertThat(st.names()).containsExactly("scales", "w");
            assertThat(st.dtypeName("scales")).isEqualTo("I8");
            assertThat(st.get("w").elementCount()).isEqualTo(2);
            assertThatThrownBy(() -> st.get("scales"))
                    .isInstanceOf(ModelFormatException.class)
                    .hasMessageContaining(file.toString())
                    .hasMessageContaining("'scales'")
                    .hasMessageContaining("I8")
                    .hasMessageContaining("F32, F16 and BF16");
        }
    }

    @Test
    void fileTooShortForTheHeaderLengthIsRejected() throws IOException {
        Path file = Files.write(dir.resolve("tiny.safetensors"), new byte[] {1, 2, 3});
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("3 bytes");
    }

    @Test
    void headerLengthBeyondTheFileIsRejected() {
        Path file = writeRaw(dir.resolve("bad-length.safetensors"), 1234, "{}", 0);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("header length field says 1234 bytes but the file has only 2 bytes after it");
    }

    @Test
    void hugeHeaderLengthIsReportedUnsigned() {
        Path file = writeRaw(dir.resolve("garbage.safetensors"), -2, "{}", 0);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("says 18446744073709551614 bytes");
    }

    @Test
    void headerThatIsNotJsonIsRejected() {
        Path file = writeRaw(dir.resolve("bad-json.safetensors"), "{\"w\": {\"dtype\": F32}", 0);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("header is not valid JSON");
    }

    @Test
    void headerThatIsNotAnObjectIsRejected() {
        Path file = writeRaw(dir.resolve("array.safetensors"), "[1, 2]", 0);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("header is array");
    }

    @Test
    void duplicateTensorNamesInTheHeaderAreRejected() {
        Path file = writeRaw(dir.resolve("dup.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        + "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("Duplicate field 'w'");
    }

    @Test
    void truncatedFileSaysHowMuchDataTheHeaderPromised() throws IOException {
        Path file = writeThreeDtypes(dir.resolve("model.safetensors"));
        long size = Files.size(file);
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE)) {
            channel.truncate(size - 10);
        }
        // 48 (a) + 60 (b) + 14 (c) bytes of data were written; 10 are gone.
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("header says 122 bytes of data but the file has 112 after the header")
                .hasMessageContaining("truncated");
    }

    @Test
    void offsetsPastTheDataSectionAreRejected() {
        Path file = writeRaw(dir.resolve("oob.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[100,116]}}", 16);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("header says 116 bytes of data but the file has 16 after the header")
                .hasMessageContaining("'w' ends at 116");
    }

    @Test
    void overlappingTensorsAreRejected() {
        Path file = writeRaw(dir.resolve("overlap.safetensors"),
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                        + "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("tensors 'a' (bytes 0..16) and 'b' (bytes 8..24) overlap");
    }

    @Test
    void shapeThatDoesNotMatchTheByteSpanIsRejected() {
        Path file = writeRaw(dir.resolve("size.safetensors"),
                "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,4],\"data_offsets\":[0,20]}}", 20);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(file.toString())
                .hasMessageContaining("tensor 'w' has shape [3, 4] of BF16, which needs 24 bytes, but its data_offsets "
                        + "[0, 20] span 20 bytes");
    }

    @Test
    void malformedEntriesNameTheTensorAndTheField() {
        assertOpenFails("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", "tensor 'w' has dtype 'Q4'");
        assertOpenFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                "tensor 'w' has shape [-1], expected non-negative integers");
        assertOpenFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}",
                "tensor 'w' has data_offsets [4], expected a list of 2 integers");
        assertOpenFails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", "end before begin");
        assertOpenFails("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'w' has dtype null");
        assertOpenFails("{\"__metadata__\":{\"step\":5}}", "__metadata__ maps 'step' to 5");
    }

    private void assertOpenFails(String header, String expected) {
        Path file = writeRaw(dir.resolve("entry.safetensors"), header, 8);
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageStartingWith(file.toString())
                .hasMessageContaining(expected);
    }

    @Test
    void missingFileIsAFormatErrorNamingIt() {
        Path file = dir.resolve("nope.safetensors");
        assertThatThrownBy(() -> SafeTensors.open(file))
                .isInstanceOf(ModelFormatException.class)
                .hasMessage(file + ": file not found");
    }

    @Test
    void directoryIsRejectedAsNotAFile() {
        assertThatThrownBy(() -> SafeTensors.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessage(dir + ": is a directory; expected a .safetensors file");
    }

    @Test
    void closeUnmapsTheFileAndIsIdempotent() {
        Path file = writeThreeDtypes(dir.resolve("model.safetensors"));
        SafeTensors st = SafeTensors.open(file);
        TensorData a = st.get("a.f32");
        st.close();
        st.close();
        assertThatThrownBy(() -> a.data().get(ValueLayout.JAVA_BYTE, 0)).isInstanceOf(IllegalStateException.class);
        assertThatThrownBy(() -> st.get("a.f32")).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
    }
}
