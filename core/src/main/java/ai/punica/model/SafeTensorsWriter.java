package ai.punica.model;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.json.JsonField;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Supplier;

/**
 * Writes a {@code .safetensors} file the way the Python library does (header padded with spaces to a
 * multiple of 8 bytes, tensors back to back in name order). Used by the fixture tooling and by tests that
 * need valid checkpoints and adapters to corrupt. A tensor may also be added by its shape with a supplier of its
 * data, made only when {@link #write} reaches it: a multi-gigabyte checkpoint then needs no more memory than
 * its largest tensor.
 */
public final class SafeTensorsWriter {

    /** A tensor to write: its header fields now, its bytes when {@link #write} reaches it. */
    private record Entry(String name, DType dtype, long[] shape, long byteSize, Supplier<TensorData> data) {
    }

    private static final long WRITE_SLICE = 1L << 30;

    private final Map<String, Entry> tensors = new TreeMap<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    /** Adds a tensor (its bytes are copied when {@link #write} runs, not now). */
    public SafeTensorsWriter add(TensorData tensor) {
        long expected = tensor.elementCount() * tensor.dtype().byteSize();
        if (tensor.data().byteSize() != expected) {
            throw new IllegalArgumentException(tensor + " has " + tensor.data().byteSize() + " bytes of data, expected "
                    + expected);
        }
        return put(new Entry(tensor.name(), tensor.dtype(), tensor.shape(), expected, () -> tensor));
    }

    /**
     * Adds a tensor whose data {@code data} makes when {@link #write} reaches it (in name order); the tensor it
     * returns must have this name, dtype and shape. Nothing holds on to it after it is written.
     */
    public SafeTensorsWriter add(String name, DType dtype, long[] shape, Supplier<TensorData> data) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return put(new Entry(name, dtype, shape.clone(), n * dtype.byteSize(), data));
    }

    private SafeTensorsWriter put(Entry entry) {
        if (tensors.putIfAbsent(entry.name(), entry) != null) {
            throw new IllegalArgumentException("tensor '" + entry.name() + "' added twice");
        }
        return this;
    }

    /** Adds a tensor of any rank from floats, stored as {@code dtype}. */
    public SafeTensorsWriter add(String name, DType dtype, long[] shape, float[] values) {
        return add(tensor(name, dtype, shape, values));
    }

    public SafeTensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    /** A heap tensor of any rank from floats, stored as {@code dtype}. */
    public static TensorData tensor(String name, DType dtype, long[] shape, float[] values) {
        return TensorData.of(name, dtype, shape, values);
    }

    /** The header JSON as it will be written (before padding). */
    public String headerJson() {
        ObjectNode header = JsonField.JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode meta = header.putObject("__metadata__");
            metadata.forEach(meta::put);
        }
        long offset = 0;
        for (Entry t : tensors.values()) {
            ObjectNode entry = header.putObject(t.name());
            entry.put("dtype", t.dtype().safetensorsName());
            ArrayNode shape = entry.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            long size = t.byteSize();
            entry.putArray("data_offsets").add(offset).add(offset + size);
            offset += size;
        }
        try {
            return JsonField.JSON.writeValueAsString(header);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    public void write(Path file) {
        byte[] json = headerJson().getBytes(StandardCharsets.UTF_8);
        // Pad with spaces so the data section starts 8-byte aligned, as the Python writer does.
        int padded = (json.length + 7) & ~7;
        ByteBuffer prefix = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        prefix.putLong(padded).put(json);
        while (prefix.hasRemaining()) {
            prefix.put((byte) ' ');
        }
        prefix.flip();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(channel, prefix);
            for (Entry e : tensors.values()) {
                TensorData t = e.data().get();
                if (!t.name().equals(e.name()) || t.dtype() != e.dtype() || !Arrays.equals(t.shape(), e.shape())
                        || t.data().byteSize() != e.byteSize()) {
                    throw new IllegalStateException("the data made for '" + e.name() + "' is " + t + ", expected "
                            + e.dtype() + " " + Arrays.toString(e.shape()));
                }
                // In slices: a ByteBuffer view holds at most 2 GiB.
                for (long at = 0; at < e.byteSize(); at += WRITE_SLICE) {
                    MemorySegment slice = t.data().asSlice(at, Math.min(WRITE_SLICE, e.byteSize() - at));
                    // asByteBuffer views native memory and byte[]; other heap arrays (short[]) are copied.
                    boolean viewable = slice.heapBase().map(byte[].class::isInstance).orElse(true);
                    writeFully(channel, viewable ? slice.asByteBuffer()
                            : ByteBuffer.wrap(slice.toArray(ValueLayout.JAVA_BYTE)));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file, e);
        }
    }

    private static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }
}
