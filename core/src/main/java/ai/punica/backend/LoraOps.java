package ai.punica.backend;

import java.util.List;

/**
 * Segmented LoRA (SGMV, Punica §4): each segment is a run of rows that share one adapter slot, and one
 * call covers every segment. {@link #matmulLora} is a projection with its add-on, defined by
 * {@link DenseOps#matmul}, hence the extension.
 */
public interface LoraOps extends DenseOps {

    /**
     * Shrink: for each segment i with an adapter, {@code v[r, vCol : vCol + rank] = x[r] · A_{slot}ᵀ} for
     * its rows. Other columns of v, and rows of segments without an adapter, are left undefined.
     */
    void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol);

    /** {@link #sgmvShrink(Tensor, LoraWeights, Segments, Tensor, int)} into the first columns of v. */
    default void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v) {
        sgmvShrink(x, weights, segments, v, 0);
    }

    /**
     * Expand: for each segment i with an adapter,
     * {@code y[r, yCol : yCol + out] += scale_{slot} · v[r, vCol : vCol + rank] · B_{slot}ᵀ}; other rows
     * untouched.
     */
    void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol);

    /** {@link #sgmvExpand(Tensor, int, LoraWeights, Segments, Tensor, int)} from the first columns of v. */
    default void sgmvExpand(Tensor v, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        sgmvExpand(v, 0, weights, segments, y, yCol);
    }

    /**
     * The shrink of several projections that read the same input (q|k|v, gate|up) at once: projection i
     * of {@code group} writes its {@link #sgmvShrink} result into columns {@code [i·w, i·w + rank)} of v,
     * {@code w = v.cols / group.size()} (so v is at least {@code group.size() ·} the largest rank wide).
     * A projection whose adapter slot of a segment is absent skips that segment, as the single op does.
     * This default runs one shrink per projection; backends override it to cover the group in one pass.
     */
    default void sgmvShrinkGroup(Tensor x, List<LoraWeights> group, Segments segments, Tensor v) {
        int w = v.cols() / group.size();
        for (int i = 0; i < group.size(); i++) {
            sgmvShrink(x, group.get(i), segments, v, i * w);
        }
    }

    /**
     * The expand matching {@link #sgmvShrinkGroup}: projection i of {@code group} adds
     * {@code scale · v[r, i·w : i·w + rank] · Bᵀ} into columns {@code [yCols[i], yCols[i] + out_i)} of y,
     * {@code w = v.cols / group.size()}, for the segments where its slot is present. The projections'
     * column ranges in y must not overlap. This default runs one expand per projection.
     */
    default void sgmvExpandGroup(Tensor v, List<LoraWeights> group, Segments segments, Tensor y, int[] yCols) {
        if (yCols.length != group.size()) {
            throw ShapeChecks.fail("sgmvExpandGroup", yCols.length + " output columns for " + group.size() + " projections");
        }
        int w = v.cols() / group.size();
        for (int i = 0; i < group.size(); i++) {
            sgmvExpand(v, i * w, group.get(i), segments, y, yCols[i]);
        }
    }

    /**
     * A projection with the LoRA add-on of every projection of {@code group} (those that read {@code x}):
     * {@code out = x·wᵀ (+ bias)}, then the shrink into the rank-space scratch {@code v} and the expand into
     * {@code out} at {@code cols}: {@link #sgmvShrink}/{@link #sgmvExpand} for one projection,
     * {@link #sgmvShrinkGroup}/{@link #sgmvExpandGroup} for several. This default runs the three in that
     * order; a device backend overlaps the shrink, which reads only x, with the GEMM, with the same result.
     */
    default void matmulLora(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group, Segments segments,
                            Tensor v, int[] cols) {
        matmul(x, w, bias, out);
        sgmvAddOn(x, group, segments, v, out, cols);
    }

    /**
     * The LoRA add-on of every projection of {@code group} into {@code y} at {@code cols}: the shrink into the
     * rank-space scratch {@code v}, then the expand ({@link #sgmvShrink}/{@link #sgmvExpand} for one projection,
     * {@link #sgmvShrinkGroup}/{@link #sgmvExpandGroup} for several).
     */
    default void sgmvAddOn(Tensor x, List<LoraWeights> group, Segments segments, Tensor v, Tensor y, int[] cols) {
        if (group.size() == 1) {
            sgmvShrink(x, group.getFirst(), segments, v, 0);
            sgmvExpand(v, 0, group.getFirst(), segments, y, cols[0]);
        } else {
            sgmvShrinkGroup(x, group, segments, v);
            sgmvExpandGroup(v, group, segments, y, cols);
        }
    }

    /**
     * The projection with its LoRA add-on kept apart, for the op that consumes the projection to add
     * ({@link #addRmsNorm(Tensor, Tensor, Tensor, Tensor, float, Tensor)}, {@link #swiglu(Tensor, Tensor, Tensor)},
     * {@link AttentionOps#ropeAppendKv(Tensor, Tensor, int[], RopeTable, int, int, int, KvStorage, int, int, int, int[])}):
     * {@code out = x·wᵀ (+ bias)}, and {@code lora} (out's shape) holds what {@link #matmulLora} would have added:
     * the add-on at each projection's columns, zero elsewhere and on rows without an adapter. A device runs the
     * add-on beside the GEMM (neither reads the other's output), and nothing adds it into out: the consumer reads
     * both. This default zeroes lora and runs the GEMM, the shrink and the expand (into lora) in order.
     */
    default void matmulLoraApart(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group,
                                 Segments segments, Tensor v, int[] cols, Tensor lora) {
        if (lora.rows() != out.rows() || lora.cols() != out.cols()) {
            throw ShapeChecks.fail("matmulLoraApart", "the add-on " + lora.rows() + "x" + lora.cols()
                    + " does not match the output " + out.rows() + "x" + out.cols());
        }
        matmul(x, w, bias, out);
        zero(lora);
        sgmvAddOn(x, group, segments, v, lora, cols);
    }
}
