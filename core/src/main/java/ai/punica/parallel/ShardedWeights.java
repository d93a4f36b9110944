package ai.punica.parallel;

import ai.punica.backend.TensorData;
import ai.punica.model.ModelFormatException;
import ai.punica.model.Projection;
import ai.punica.model.WeightSource;
import java.lang.foreign.MemorySegment;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One rank's shard of a checkpoint, tensor by tensor as {@link ai.punica.model.LlamaModel#load} asks for them
 * (see {@link ShardLayout} for which tensor splits how). A column-parallel weight's shard is a run of whole
 * rows, so it is a view of the memory-mapped file (nothing read until the backend copies it); a
 * row-parallel weight's shard is a block of columns, copied row by row from the mapping, so each rank reads
 * only its own columns. Nothing is ever copied whole per rank.
 */
public final class ShardedWeights implements WeightSource {

    /** A projection's weight or bias, or one of its LoRA matrices: ".q_proj.weight", ".o_proj.lora_A.weight". */
    private static final Pattern PROJECTION_TENSOR = Pattern.compile(
            "\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\\.(weight|bias|lora_A\\.weight|lora_B\\.weight)$");

    private final WeightSource whole;
    private final ShardLayout layout;
    private final int rank;

    public ShardedWeights(WeightSource whole, ShardLayout layout, int rank) {
        if (rank < 0 || rank >= layout.size()) {
            throw new IllegalArgumentException("rank " + rank + " is not in 0.." + (layout.size() - 1));
        }
        this.whole = whole;
        this.layout = layout;
        this.rank = rank;
    }

    @Override
    public TensorData get(String name) {
        return shard(whole.get(name), layout, rank);
    }

    @Override
    public boolean contains(String name) {
        return whole.contains(name);
    }

    /**
     * Rank {@code rank}'s part of {@code t}, chosen by its name: the whole tensor when it is not split
     * (embeddings, norms, lm_head, the LoRA matrix a split keeps whole), else its rows or columns.
     */
    public static TensorData shard(TensorData t, ShardLayout layout, int rank) {
        Matcher m = PROJECTION_TENSOR.matcher(t.name());
        if (!m.find()) {
            return t;
        }
        Projection p = Projection.fromModuleName(m.group(1));
        String kind = m.group(2);
        int[] range = layout.featureRange(p, rank);
        boolean column = ShardLayout.columnParallel(p);
        return switch (kind) {
            // W [out, in], bias [out]: column-parallel keeps output rows, row-parallel input columns
            case "weight", "bias" -> column ? rows(t, range[0], range[1]) : columns(t, range[0], range[1]);
            // A [r, in]: whole where the input is whole (column-parallel), else the rank's input columns
            case "lora_A.weight" -> column ? t : columns(t, range[0], range[1]);
            // B [out, r]: the rank's output rows (column-parallel), else whole (it expands a reduced sum)
            default -> column ? rows(t, range[0], range[1]) : t;
        };
    }

    /** Rows {@code [start, start + count)} of a 2-D tensor, or elements of a 1-D one: a view, no copy. */
    static TensorData rows(TensorData t, int start, int count) {
        long rowElements = t.rank() == 1 ? 1 : t.dim(1);
        checkRange(t, 0, start, count);
        long bytes = rowElements * t.dtype().byteSize();
        long[] shape = t.shape();
        shape[0] = count;
        return new TensorData(t.name(), t.dtype(), shape, t.data().asSlice(start * bytes, count * bytes));
    }

    /** Columns {@code [start, start + count)} of a 2-D tensor, copied row by row into a fresh segment. */
    static TensorData columns(TensorData t, int start, int count) {
        if (t.rank() != 2) {
            throw new ModelFormatException(t + ": a row-parallel tensor must be 2-D to split by columns");
        }
        checkRange(t, 1, start, count);
        long rowCount = t.dim(0);
        long elem = t.dtype().byteSize();
        long srcRow = t.dim(1) * elem;
        long dstRow = count * elem;
        MemorySegment dst = MemorySegment.ofArray(new byte[Math.toIntExact(rowCount * dstRow)]);
        for (long r = 0; r < rowCount; r++) {
            MemorySegment.copy(t.data(), r * srcRow + start * elem, dst, r * dstRow, dstRow);
        }
        return new TensorData(t.name(), t.dtype(), new long[] {rowCount, count}, dst);
    }

    private static void checkRange(TensorData t, int dim, int start, int count) {
        if (t.rank() <= dim || start + (long) count > t.dim(dim)) {
            throw new ModelFormatException(t + ": cannot take " + count + " features from " + start + " along dim "
                    + dim + " for a tensor-parallel shard; the tensor's shape does not match config.json");
        }
    }
}
