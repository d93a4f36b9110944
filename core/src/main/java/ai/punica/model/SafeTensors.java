package ai.punica.model;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.json.JsonField;
import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * One {@code .safetensors} file, memory-mapped once with FFM; every tensor is a read-only slice of the
 * mapping, so opening a 16 GB checkpoint costs page-table entries, not 16 GB of heap.
 *
 * <pre>
 * [u64 LE: N] [N bytes: JSON header] [data section: tensors at header-relative data_offsets]
 * header = { "__metadata__": {str: str}?, name: {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, .. }
 * </pre>
 *
 * Everything the header claims is checked against the file when it is opened (sizes, bounds, overlaps),
 * so a truncated download fails here with the file's name rather than as a SIGBUS or garbage logits later.
 * Tensors whose dtype Punica-J does not compute with (I8, F64, ...) are listed by {@link #names()} and
 * rejected only by {@link #get}, so a checkpoint carrying an unused integer buffer still loads.
 */
public final class SafeTensors implements AutoCloseable {

    /** The safetensors reference implementation refuses headers over 100 MB; so do we. */
    static final long MAX_HEADER_BYTES = 100_000_000L;

    private static final ValueLayout.OfLong LONG_LE =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Element sizes of every dtype the format defines, so that sizes are checked even for dtypes we do not load. */
    private static final Map<String, Integer> DTYPE_BYTES = Map.ofEntries(
            Map.entry("BOOL", 1), Map.entry("U8", 1), Map.entry("I8", 1),
            Map.entry("F8_E5M2", 1), Map.entry("F8_E4M3", 1), Map.entry("F8_E8M0", 1),
            Map.entry("I16", 2), Map.entry("U16", 2), Map.entry("F16", 2), Map.entry("BF16", 2),
            Map.entry("I32", 4), Map.entry("U32", 4), Map.entry("F32", 4),
            Map.entry("I64", 8), Map.entry("U64", 8), Map.entry("F64", 8));

    private record Entry(String name, String dtypeName, DType dtype, long[] shape, long begin, long end) {
    }

    private final Path file;
    private final Arena arena;
    private final MemorySegment dataSection;
    /** Where the data section starts in the file: 8 + the header's length. */
    private final long dataStart;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;
    private volatile boolean closed;

    private SafeTensors(Path file, Arena arena, MemorySegment dataSection, long dataStart, Map<String, Entry> entries,
            Map<String, String> metadata) {
        this.file = file;
        this.arena = arena;
        this.dataSection = dataSection;
        this.dataStart = dataStart;
        this.entries = entries;
        this.metadata = metadata;
    }

    /** Maps {@code file} and validates its header; throws {@link ModelFormatException} naming the file and the problem. */
    public static SafeTensors open(Path file) {
        if (Files.isDirectory(file)) {
            throw fail(file, "is a directory; expected a .safetensors file");
        }
        Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = channel.size();
            if (size < 8) {
                throw fail(file, "the file has " + size
                        + " bytes, too few for the 8-byte header length; is this a safetensors file?");
            }
            MemorySegment mapped = channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerBytes = mapped.get(LONG_LE, 0);
            if (headerBytes < 0 || headerBytes > size - 8) {
                throw fail(file, "the header length field says " + Long.toUnsignedString(headerBytes)
                        + " bytes but the file has only " + (size - 8)
                        + " bytes after it; the file is truncated or not a safetensors file");
            }
            if (headerBytes > MAX_HEADER_BYTES) {
                throw fail(file, "the header length field says " + headerBytes + " bytes, more than the "
                        + MAX_HEADER_BYTES + " the format allows; the file is corrupt");
            }
            byte[] header = mapped.asSlice(8, headerBytes).toArray(ValueLayout.JAVA_BYTE);
            MemorySegment data = mapped.asSlice(8 + headerBytes);
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, Entry> entries = parseHeader(file, header, data.byteSize(), metadata);
            return new SafeTensors(file, arena, data, 8 + headerBytes, entries, Collections.unmodifiableMap(metadata));
        } catch (NoSuchFileException e) {
            arena.close();
            throw fail(file, "file not found");
        } catch (IOException e) {
            arena.close();
            throw new ModelFormatException(file + ": cannot read: " + e, e);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static Map<String, Entry> parseHeader(Path file, byte[] header, long dataBytes,
            Map<String, String> metadataOut) {
        JsonNode root;
        try {
            root = JsonField.JSON.readTree(header);
        } catch (JacksonException e) {
            throw new ModelFormatException(file + ": the header is not valid JSON: "
                    + JsonField.firstLine(e.getOriginalMessage()) + "; the file is corrupt", e);
        } catch (IOException e) {
            throw new ModelFormatException(file + ": cannot parse the header: " + e, e);
        }
        if (root == null || !root.isObject()) {
            throw fail(file, "the header is " + (root == null ? "empty" : root.getNodeType().toString().toLowerCase())
                    + ", expected a JSON object of tensor entries");
        }
        Map<String, Entry> entries = new TreeMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> field = it.next();
            if (field.getKey().equals("__metadata__")) {
                readMetadata(file, field.getValue(), metadataOut);
            } else {
                Entry entry = parseEntry(file, field.getKey(), field.getValue());
                entries.put(entry.name(), entry);
            }
        }
        checkLayout(file, entries, dataBytes);
        return entries;
    }

    private static void readMetadata(Path file, JsonNode node, Map<String, String> out) {
        if (!node.isObject()) {
            throw fail(file, "__metadata__ is " + node + ", expected an object of string -> string");
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw fail(file, "__metadata__ maps '" + e.getKey() + "' to " + e.getValue()
                        + "; the format allows only string values");
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
    }

    private static Entry parseEntry(Path file, String name, JsonNode node) {
        String what = "tensor '" + name + "'";
        if (!node.isObject()) {
            throw fail(file, what + " has header entry " + node + ", expected {\"dtype\", \"shape\", \"data_offsets\"}");
        }
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw fail(file, what + " has dtype " + dtypeNode + ", expected a string like \"BF16\"");
        }
        String dtypeName = dtypeNode.textValue();
        Integer elementBytes = DTYPE_BYTES.get(dtypeName);
        if (elementBytes == null) {
            throw fail(file, what + " has dtype '" + dtypeName + "', which is not a safetensors dtype (known: "
                    + String.join(", ", new TreeMap<>(DTYPE_BYTES).keySet()) + ")");
        }
        long[] shape = nonNegativeLongs(file, what, "shape", node.get("shape"), -1);
        long[] offsets = nonNegativeLongs(file, what, "data_offsets", node.get("data_offsets"), 2);
        if (offsets[1] < offsets[0]) {
            throw fail(file, what + " has data_offsets " + Arrays.toString(offsets) + " with end before begin");
        }
        long bytes;
        try {
            long elements = 1;
            for (long d : shape) {
                elements = Math.multiplyExact(elements, d);
            }
            bytes = Math.multiplyExact(elements, (long) elementBytes);
        } catch (ArithmeticException e) {
            throw fail(file, what + " has shape " + Arrays.toString(shape) + ", too large to address");
        }
        if (bytes != offsets[1] - offsets[0]) {
            throw fail(file, what + " has shape " + Arrays.toString(shape) + " of " + dtypeName + ", which needs "
                    + bytes + " bytes, but its data_offsets " + Arrays.toString(offsets) + " span "
                    + (offsets[1] - offsets[0]) + " bytes");
        }
        return new Entry(name, dtypeName, DType.fromSafetensors(dtypeName), shape, offsets[0], offsets[1]);
    }

    private static long[] nonNegativeLongs(Path file, String what, String field, JsonNode node, int length) {
        if (node == null || !node.isArray() || (length >= 0 && node.size() != length)) {
            throw fail(file, what + " has " + field + " " + node + ", expected "
                    + (length >= 0 ? "a list of " + length + " integers" : "a list of integers"));
        }
        long[] out = new long[node.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                throw fail(file, what + " has " + field + " " + node + ", expected non-negative integers");
            }
            out[i] = v.longValue();
        }
        return out;
    }

    /**
     * Every tensor inside the data section, and no two sharing a byte. Holes between tensors are tolerated:
     * the reference library refuses them, but they cannot make a tensor read wrong bytes.
     */
    private static void checkLayout(Path file, Map<String, Entry> entries, long dataBytes) {
        Entry last = null;
        for (Entry e : entries.values()) {
            if (last == null || e.end() > last.end()) {
                last = e;
            }
        }
        if (last != null && last.end() > dataBytes) {
            throw fail(file, "the header says " + last.end() + " bytes of data but the file has " + dataBytes
                    + " after the header (tensor '" + last.name() + "' ends at " + last.end()
                    + "); the file is truncated, download or save it again");
        }
        List<Entry> byOffset = new ArrayList<>(entries.values());
        byOffset.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        for (int i = 1; i < byOffset.size(); i++) {
            Entry a = byOffset.get(i - 1);
            Entry b = byOffset.get(i);
            if (b.begin() < a.end()) {
                throw fail(file, "tensors '" + a.name() + "' (bytes " + a.begin() + ".." + a.end() + ") and '"
                        + b.name() + "' (bytes " + b.begin() + ".." + b.end() + ") overlap; the file is corrupt");
            }
        }
    }

    private static ModelFormatException fail(Path file, String problem) {
        return new ModelFormatException(file + ": " + problem);
    }

    /** Tensor names, sorted; includes tensors of dtypes that {@link #get} refuses. */
    public Set<String> names() {
        return Collections.unmodifiableSet(entries.keySet());
    }

    public boolean contains(String name) {
        return entries.containsKey(name);
    }

    /** The tensor as a slice of the mapping, valid until {@link #close()}. */
    public TensorData get(String name) {
        if (closed) {
            throw new IllegalStateException(file + " is closed; tensor '" + name + "' cannot be read");
        }
        Entry e = entries.get(name);
        if (e == null) {
            throw fail(file, "no tensor named '" + name + "' (the file has " + entries.size() + " tensors"
                    + (entries.isEmpty() ? "" : ", e.g. '" + entries.keySet().iterator().next() + "'")
                    + "); is this the right checkpoint for this model?");
        }
        if (e.dtype() == null) {
            throw fail(file, "tensor '" + name + "' has dtype " + e.dtypeName()
                    + "; Punica-J computes with F32, F16 and BF16 only; convert the checkpoint, e.g. "
                    + "save it with torch_dtype=torch.bfloat16");
        }
        return new TensorData(name, e.dtype(), e.shape(), dataSection.asSlice(e.begin(), e.end() - e.begin()));
    }

    /**
     * Where the bytes of {@code name} start in the file, for a reader that copies them with positional reads
     * instead of through the mapping (an adapter read straight into pinned memory); -1 if absent.
     */
    public long fileOffset(String name) {
        Entry e = entries.get(name);
        return e == null ? -1 : dataStart + e.begin();
    }

    /** The shape of {@code name} without touching its data (works for every dtype); null if absent. */
    public long[] shape(String name) {
        Entry e = entries.get(name);
        return e == null ? null : e.shape().clone();
    }

    /** The dtype string of {@code name} as stored ("BF16", "I8", ...); null if absent. */
    public String dtypeName(String name) {
        Entry e = entries.get(name);
        return e == null ? null : e.dtypeName();
    }

    /** The header's {@code __metadata__} (empty if none). */
    public Map<String, String> metadata() {
        return metadata;
    }

    public Path file() {
        return file;
    }

    /** Unmaps the file; slices handed out by {@link #get} become unusable. Idempotent. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "SafeTensors[" + file + ", " + entries.size() + " tensors]";
    }
}
