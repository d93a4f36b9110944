package ai.punica.lora;

import ai.punica.backend.DType;
import ai.punica.backend.PinnedHostMemory;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightBlockLayout;
import ai.punica.model.ModelConfig;
import ai.punica.model.ModelFormatException;
import ai.punica.model.Projection;
import ai.punica.model.SafeTensors;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A PEFT LoRA adapter in host memory: {@code adapter_config.json} plus {@code adapter_model.safetensors}.
 * Loading validates every tensor against the config and the base model, so a mismatched adapter fails here,
 * naming the tensor, rather than corrupting a shared batch later; then it copies all A and B tensors into one
 * block of native memory and unmaps the file. The copy is the "disk" stage of an adapter load: it reads
 * every byte now, on a loader thread, instead of faulting pages in later on the thread that copies the
 * adapter to the device, and what the host cache counts ({@link #sizeBytes}) is memory the process really
 * holds, not page cache. {@link #check} validates without copying (registration).
 *
 * <p>With a backend's {@link PinnedHostMemory} (a GPU's page-locked memory), the block is pinned and laid out as
 * the device block of a slot ({@link WeightBlockLayout}: slot order, the device's dtype and alignment), and each
 * tensor stored in that dtype is read from the file straight into its place (positional reads, no mapping, no
 * intermediate copy); the upload to a slot is then one copy of the whole block. Where pinned memory cannot be
 * had, the block is ordinary native memory as above and the upload goes through staging.
 *
 * <p>For an adapted projection of layer l: {@code y += scale · (x · Aᵀ) · Bᵀ} with
 * A = {@code lora_A.weight} [r, inFeatures] and B = {@code lora_B.weight} [outFeatures, r].
 */
public final class LoraAdapter implements AutoCloseable {

    public static final String CONFIG_FILE = "adapter_config.json";
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";

    /** PEFT's saved keys; older writers kept the adapter name ("default") before ".weight". */
    private static final Pattern KEY = Pattern.compile(
            "base_model\\.model\\.model\\.layers\\.(\\d{1,6})\\.(\\w+)\\.(\\w+)\\.lora_([AB])(\\.default)?\\.weight");

    private final String name;
    private final Path directory;
    private final LoraAdapterConfig config;
    /** What the tensors' memory belongs to: the native copy's arena, or the file mapping while validating. */
    private final AutoCloseable memory;
    /** The mapped file while validating (positional reads need its tensors' file offsets); null once copied. */
    private final SafeTensors file;
    /** True when the tensors live in one pinned block in the device's layout. */
    private final boolean pinned;
    private final TensorData[][] a;
    private final TensorData[][] b;
    private final int[][] ranks;
    private final float[][] scales;
    private final Set<Projection> targets;
    private final int maxRank;
    private final long sizeBytes;

    private LoraAdapter(String name, Path directory, LoraAdapterConfig config, AutoCloseable memory, TensorData[][] a,
            TensorData[][] b, int[][] ranks, float[][] scales) {
        this(name, directory, config, memory, memory instanceof SafeTensors s ? s : null, a, b, ranks, scales, -1);
    }

    /** {@code blockBytes}: the size of the pinned block holding the tensors, or -1 (ordinary memory, computed). */
    private LoraAdapter(String name, Path directory, LoraAdapterConfig config, AutoCloseable memory, SafeTensors file,
            TensorData[][] a, TensorData[][] b, int[][] ranks, float[][] scales, long blockBytes) {
        this.name = name;
        this.directory = directory;
        this.config = config;
        this.memory = memory;
        this.file = file;
        this.pinned = blockBytes >= 0;
        this.a = a;
        this.b = b;
        this.ranks = ranks;
        this.scales = scales;
        EnumSet<Projection> adapted = EnumSet.noneOf(Projection.class);
        int max = 0;
        long bytes = 0;
        for (int layer = 0; layer < a.length; layer++) {
            for (Projection p : Projection.values()) {
                if (a[layer][p.ordinal()] != null) {
                    adapted.add(p);
                    max = Math.max(max, ranks[layer][p.ordinal()]);
                    bytes += align(a[layer][p.ordinal()].data().byteSize()) + align(b[layer][p.ordinal()].data().byteSize());
                }
            }
        }
        this.targets = Collections.unmodifiableSet(adapted);
        this.maxRank = max;
        this.sizeBytes = blockBytes >= 0 ? blockBytes : bytes;
    }

    /**
     * Loads the adapter in {@code dir} into host memory and checks it against {@code base};
     * {@link ModelFormatException} names the file and the field or tensor that does not fit.
     */
    public static LoraAdapter load(String name, Path dir, ModelConfig base) {
        return load(name, dir, base, null);
    }

    /**
     * {@link #load(String, Path, ModelConfig)} into one block of {@code pinned} memory in the device's layout
     * (see the class comment), or into ordinary memory when {@code pinned} is null or has no block to give.
     */
    public static LoraAdapter load(String name, Path dir, ModelConfig base, PinnedHostMemory pinned) {
        try (LoraAdapter mapped = open(name, dir, base)) {
            LoraAdapter copy = pinned == null ? null : mapped.copyToPinnedMemory(pinned);
            return copy != null ? copy : mapped.copyToNativeMemory();
        }
    }

    /**
     * Checks the adapter in {@code dir} against {@code base} as {@link #load} does, reading the header and the
     * config but not the weights' values, and returns its largest rank.
     */
    public static int check(String name, Path dir, ModelConfig base) {
        try (LoraAdapter mapped = open(name, dir, base)) {
            return mapped.maxRank();
        }
    }

    /** The adapter over a mapping of its file (the tensors are slices of it). */
    private static LoraAdapter open(String name, Path dir, ModelConfig base) {
        LoraAdapterConfig config = LoraAdapterConfig.load(dir.resolve(CONFIG_FILE));
        Path file = dir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(file)) {
            String hint = Files.exists(dir.resolve("adapter_model.bin"))
                    ? "; it has adapter_model.bin (PyTorch pickle), which Punica-J does not read: re-save with "
                            + "model.save_pretrained(dir, safe_serialization=True)"
                    : "";
            throw new ModelFormatException(file + ": file not found" + hint);
        }
        SafeTensors weights = SafeTensors.open(file);
        try {
            return validate(name, dir, config, weights, base);
        } catch (RuntimeException e) {
            weights.close();
            throw e;
        }
    }

    private static LoraAdapter validate(String name, Path dir, LoraAdapterConfig config, SafeTensors weights,
            ModelConfig base) {
        Path file = weights.file();
        int layers = base.numLayers();
        int kinds = Projection.values().length;
        TensorData[][] a = new TensorData[layers][kinds];
        TensorData[][] b = new TensorData[layers][kinds];
        for (String key : weights.names()) {
            Matcher m = KEY.matcher(key);
            Projection p = m.matches() ? Projection.fromModuleName(m.group(3)) : null;
            if (p == null || !p.parent().equals(m.group(2))) {
                throw new ModelFormatException(file + ": unexpected tensor '" + key + "'; a LoRA adapter for "
                        + "Punica-J holds only base_model.model.model.layers.N.{self_attn,mlp}.<projection>.lora_{A,B}"
                        + ".weight (no embeddings, lm_head, biases, DoRA magnitudes or saved modules)");
            }
            int layer = Integer.parseInt(m.group(1));
            if (layer >= layers) {
                throw new ModelFormatException(file + ": tensor '" + key + "' is for layer " + layer
                        + " but the base model has " + layers + " layers (0.." + (layers - 1)
                        + "); was the adapter trained for a different base model?");
            }
            if (!config.adapts(layer, p)) {
                throw new ModelFormatException(file + ": tensor '" + key + "' adapts " + p.modulePath(layer)
                        + ", which target_modules in " + CONFIG_FILE + " does not select");
            }
            TensorData[][] slot = m.group(4).equals("A") ? a : b;
            if (slot[layer][p.ordinal()] != null) {
                throw new ModelFormatException(file + ": tensor '" + key + "' duplicates '"
                        + slot[layer][p.ordinal()].name() + "'; keep one of them");
            }
            slot[layer][p.ordinal()] = weights.get(key);
        }

        int[][] ranks = new int[layers][kinds];
        float[][] scales = new float[layers][kinds];
        for (int layer = 0; layer < layers; layer++) {
            for (Projection p : Projection.values()) {
                int i = p.ordinal();
                if (!config.adapts(layer, p)) {
                    continue;
                }
                String prefix = "base_model.model." + p.modulePath(layer);
                if (a[layer][i] == null || b[layer][i] == null) {
                    throw new ModelFormatException(file + ": " + CONFIG_FILE + " targets " + p.modulePath(layer)
                            + " but there is no tensor '" + prefix + (a[layer][i] == null ? ".lora_A" : ".lora_B")
                            + ".weight'; the adapter file is incomplete or was saved with different target_modules");
                }
                int r = config.rank(layer, p);
                int in = p.inFeatures(base);
                int out = p.outFeatures(base);
                checkShape(file, a[layer][i], new long[] {r, in}, "[r, in_features]", r, p, base);
                checkShape(file, b[layer][i], new long[] {out, r}, "[out_features, r]", r, p, base);
                ranks[layer][i] = r;
                scales[layer][i] = config.scale(layer, p);
            }
        }
        return new LoraAdapter(name, dir, config, weights, a, b, ranks, scales);
    }

    private static void checkShape(Path file, TensorData t, long[] expected, String layout, int r, Projection p,
            ModelConfig base) {
        if (!Arrays.equals(t.shape(), expected)) {
            throw new ModelFormatException(file + ": tensor '" + t.name() + "' has shape " + Arrays.toString(t.shape())
                    + " but " + Arrays.toString(expected) + " = " + layout + " was expected, with r = " + r + " from "
                    + CONFIG_FILE + " (r / rank_pattern) and " + p.moduleName() + " of the base model being ["
                    + p.outFeatures(base) + " out, " + p.inFeatures(base) + " in]; was the adapter trained for this base model?");
        }
    }

    public String name() {
        return name;
    }

    public Path directory() {
        return directory;
    }

    public LoraAdapterConfig config() {
        return config;
    }

    /** The base model's layer count this adapter was validated against. */
    public int numLayers() {
        return a.length;
    }

    /** Projections adapted in at least one layer. */
    public Set<Projection> targets() {
        return targets;
    }

    public boolean adapts(int layer, Projection p) {
        return a[checkLayer(layer)][p.ordinal()] != null;
    }

    /** lora_A [r, inFeatures], or null if this projection is not adapted. */
    public TensorData loraA(int layer, Projection p) {
        return a[checkLayer(layer)][p.ordinal()];
    }

    /** lora_B [outFeatures, r], or null if this projection is not adapted. */
    public TensorData loraB(int layer, Projection p) {
        return b[checkLayer(layer)][p.ordinal()];
    }

    /** r of this projection (rank_pattern honoured); 0 if not adapted. */
    public int rank(int layer, Projection p) {
        return ranks[checkLayer(layer)][p.ordinal()];
    }

    /** alpha/r or alpha/√r (alpha_pattern, rank_pattern and use_rslora honoured); 0 if not adapted. */
    public float scale(int layer, Projection p) {
        return scales[checkLayer(layer)][p.ordinal()];
    }

    /**
     * lora_A and lora_B of every adapted projection, layer by layer and in {@link Projection} order: the
     * order in which a slot's weights are uploaded and then found again.
     */
    public List<TensorData> weightsInSlotOrder() {
        List<TensorData> weights = new ArrayList<>();
        for (int layer = 0; layer < a.length; layer++) {
            for (Projection p : Projection.values()) {
                if (a[layer][p.ordinal()] != null) {
                    weights.add(a[layer][p.ordinal()]);
                    weights.add(b[layer][p.ordinal()]);
                }
            }
        }
        return weights;
    }

    /** The largest r over adapted projections. */
    public int maxRank() {
        return maxRank;
    }

    /**
     * Bytes of host memory the tensors take (what this adapter costs the host cache): the pinned block, or all A and
     * B tensors each 64-byte aligned.
     */
    public long sizeBytes() {
        return sizeBytes;
    }

    /** True when the tensors live in one block of a backend's pinned memory, in its device layout. */
    public boolean pinned() {
        return pinned;
    }

    /** This adapter with every tensor copied into one native block (64-byte aligned each) it owns. */
    private LoraAdapter copyToNativeMemory() {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment block = arena.allocate(Math.max(sizeBytes, 1), 64);
            long offset = 0;
            TensorData[][] ca = new TensorData[a.length][];
            TensorData[][] cb = new TensorData[b.length][];
            for (int layer = 0; layer < a.length; layer++) {
                ca[layer] = new TensorData[a[layer].length];
                cb[layer] = new TensorData[b[layer].length];
                for (int p = 0; p < a[layer].length; p++) {
                    if (a[layer][p] == null) {
                        continue;
                    }
                    ca[layer][p] = copyInto(a[layer][p], block, offset);
                    offset += align(a[layer][p].data().byteSize());
                    cb[layer][p] = copyInto(b[layer][p], block, offset);
                    offset += align(b[layer][p].data().byteSize());
                }
            }
            return new LoraAdapter(name, directory, config, arena, ca, cb, ranks, scales);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /**
     * This adapter in one block of {@code pinned} memory laid out as {@link WeightBlockLayout} says for
     * {@link #weightsInSlotOrder}; tensors in the device's dtype are read from the file into their place, others
     * converted from the mapping. Null when the memory refuses a block.
     */
    private LoraAdapter copyToPinnedMemory(PinnedHostMemory pinned) {
        DType dtype = pinned.dtype();
        WeightBlockLayout layout = WeightBlockLayout.of(weightsInSlotOrder(), dtype, pinned.alignment());
        Arena arena = Arena.ofShared();
        try {
            MemorySegment block = pinned.allocate(Math.max(layout.bytes(), 1), arena);
            if (block == null) {
                arena.close();
                return null;
            }
            TensorData[][] ca = new TensorData[a.length][];
            TensorData[][] cb = new TensorData[b.length][];
            try (FileChannel channel = FileChannel.open(file.file())) {
                int next = 0;
                for (int layer = 0; layer < a.length; layer++) { // the order of weightsInSlotOrder
                    ca[layer] = new TensorData[a[layer].length];
                    cb[layer] = new TensorData[b[layer].length];
                    for (int p = 0; p < a[layer].length; p++) {
                        if (a[layer][p] != null) {
                            ca[layer][p] = readInto(a[layer][p], dtype, block, layout.offset(next++), channel);
                            cb[layer][p] = readInto(b[layer][p], dtype, block, layout.offset(next++), channel);
                        }
                    }
                }
            }
            return new LoraAdapter(name, directory, config, arena, null, ca, cb, ranks, scales, layout.bytes());
        } catch (IOException e) {
            arena.close();
            throw new ModelFormatException(file.file() + ": cannot read: " + e, e);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static final ValueLayout.OfShort SHORT_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** {@code t} as {@code dtype} at {@code offset} of {@code block}: a positional read when no conversion is needed. */
    private TensorData readInto(TensorData t, DType dtype, MemorySegment block, long offset, FileChannel channel)
            throws IOException {
        long count = t.elementCount();
        MemorySegment dst = block.asSlice(offset, count * dtype.byteSize());
        if (t.dtype() == dtype) {
            ByteBuffer buffer = dst.asByteBuffer();
            long at = file.fileOffset(t.name());
            while (buffer.hasRemaining()) {
                if (channel.read(buffer, at + buffer.position()) < 0) {
                    throw new ModelFormatException(file.file() + ": tensor '" + t.name() + "' ends past the end of "
                            + "the file; the file was truncated while it was read");
                }
            }
        } else {
            for (long e = 0; e < count; e++) {
                float v = t.getFloat(e);
                switch (dtype) {
                    case BF16 -> dst.set(SHORT_LE, 2 * e, DType.floatToBf16(v));
                    case F16 -> dst.set(SHORT_LE, 2 * e, DType.floatToF16(v));
                    case F32 -> dst.set(FLOAT_LE, 4 * e, v);
                }
            }
        }
        return new TensorData(t.name(), dtype, t.shape(), dst);
    }

    private static TensorData copyInto(TensorData t, MemorySegment block, long offset) {
        MemorySegment dst = block.asSlice(offset, t.data().byteSize());
        dst.copyFrom(t.data());
        return new TensorData(t.name(), t.dtype(), t.shape(), dst);
    }

    private static long align(long bytes) {
        return (bytes + 63) & ~63L;
    }

    private int checkLayer(int layer) {
        if (layer < 0 || layer >= a.length) {
            throw new IndexOutOfBoundsException("layer " + layer + " of adapter '" + name + "'; the base model has "
                    + a.length + " layers");
        }
        return layer;
    }

    /** Frees the weights' memory; tensors handed out become unusable. */
    @Override
    public void close() {
        try {
            memory.close();
        } catch (Exception e) {
            throw new IllegalStateException("closing adapter " + name + " failed", e);
        }
    }

    @Override
    public String toString() {
        return "LoraAdapter[" + name + ", " + directory + ", targets=" + targets + ", maxRank=" + maxRank + ", "
                + sizeBytes + " bytes]";
    }
}
