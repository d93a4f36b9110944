package ai.punica.model;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/** Test files: raw (possibly corrupt) safetensors bytes, and seeded random tensors for valid ones. */
public final class SafeTensorsFiles {
    private SafeTensorsFiles() {
    }

    /** Writes {@code [headerLength as u64 LE][header][dataBytes bytes]} exactly as given, however wrong. */
    public static Path writeRaw(Path file, long headerLength, String header, int dataBytes) {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer buffer = ByteBuffer.allocate(8 + json.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        buffer.putLong(headerLength).put(json);
        for (int i = 0; i < dataBytes; i++) {
            buffer.put((byte) (i * 31 + 7));
        }
        try {
            Files.write(file, buffer.array());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return file;
    }

    /** A well-formed file whose header is {@code header} and whose data section is {@code dataBytes} long. */
    public static Path writeRaw(Path file, String header, int dataBytes) {
        return writeRaw(file, header.getBytes(StandardCharsets.UTF_8).length, header, dataBytes);
    }

    /** Values in [-1, 1), never all zero, reproducible from {@code seed}. */
    public static float[] randomValues(long seed, int count) {
        SplittableRandom random = new SplittableRandom(seed);
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) random.nextDouble(-1, 1);
        }
        return values;
    }

    public static TensorData randomTensor(String name, DType dtype, long seed, long... shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return SafeTensorsWriter.tensor(name, dtype, shape, randomValues(seed, (int) n));
    }
}
