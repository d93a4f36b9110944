package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.KernelConstants.EXPAND_MAX_RANK;
import static ai.punica.backend.cuda.KernelConstants.FUSED_MAX_RANK;
import static ai.punica.backend.cuda.KernelConstants.SGMV_GROUP_MAX;
import static ai.punica.backend.cuda.KernelConstants.SGMV_THREADS;
import static ai.punica.backend.cuda.KernelConstants.SGMV_TILE_ROWS;
import static ai.punica.backend.cuda.KernelConstants.SHRINK_RANKS_PER_BLOCK;
import static ai.punica.backend.cuda.Shapes.ceilDiv;
import static ai.punica.backend.cuda.Shapes.roundUp;

import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import java.util.Arrays;
import java.util.List;

/**
 * Segmented LoRA (Punica's SGMV, sgmv.cu): the shrink {@code v = x·Aᵀ} and the expand
 * {@code y += scale·v·Bᵀ} of every row's adapter slot, one projection at a time or a group of up to three
 * that read the same input (q|k|v, gate|up) in one launch; for decode steps on sm_90+ both in one cluster
 * launch. Launch shapes depend on tensor shapes only (step graphs).
 *
 * <pre>
 *  segments ─► SgmvTiles (tile table) ─► ints ─┐   LoraWeights ─► SlotTables (A, B, rank, scale per slot) ─┐
 *  x ─► sgmv_shrink[_group][_row] ─(split-K partials, last block adds)─► v ─► sgmv_expand[_group] ─► y += …
 *  x ─► sgmv_fused_row_group (cluster of 8 per (row, projection): shrink, DSMEM sum, expand) ─► y += …
 * </pre>
 */
final class SgmvOps {
    /** A split-K shrink block covers at least this many inputs (fewer would spend more on the reduction). */
    private static final int SHRINK_MIN_SPLIT = 512;
    /** Split-K aims at this many shrink blocks per SM (a decode batch has too few tiles to fill the GPU). */
    private static final int SHRINK_BLOCKS_PER_SM = 4;
    /** Fp32 partial sums one shrink block leaves for the split-K reduction: 32 ranks × 8 rows. */
    private static final int SHRINK_PARTIAL_FLOATS = SHRINK_RANKS_PER_BLOCK * SGMV_TILE_ROWS;

    private final DeviceParts parts;
    private final SlotTables slotTables;
    private final SgmvTiles tiles = new SgmvTiles();
    /** Split-K shrink scratch: fp32 partial sums, then one arrival counter per (tile, rank block). */
    private long workspace;
    /** fusedLora and fusedMinTiles are read from here. */
    private final CudaOptions options;
    private long fusedLaunches;

    SgmvOps(DeviceParts parts, CudaOptions options) {
        this.options = options;
        this.parts = parts;
        this.slotTables = new SlotTables(parts);
    }

    /**
     * Launch shape, from shapes only (CUDA graph rule 1): a fixed number of tiles (see
     * {@link SgmvTiles#count}), {@code ceil((v.cols - vCol) / 32)} rank blocks (v is as wide as the largest
     * rank the model accepts; blocks past a slot's rank exit), and the input split into {@code splits} parts
     * when tiles × rank blocks alone would leave SMs idle: a decode batch of 32 one-row tiles is 32 blocks on
     * 132 SMs, each streaming a whole A. Which tiles are real, their slots and ranks are read by the kernel.
     */
    void shrink(CudaTensor xs, LoraWeights weights, Segments segments, CudaTensor vs, int vCol) {
        String op = "sgmvShrink";
        SlotTables.Table table = checkShrink(op, xs, weights, segments, vs, vCol, vs.cols() - vCol);
        int tileCount = SgmvTiles.count(xs.rows(), weights.slots());
        int rankBlocks = ceilDiv(vs.cols() - vCol, SHRINK_RANKS_PER_BLOCK);
        if (tileCount == 0 || rankBlocks == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        int in = xs.cols();
        int kChunk = shrinkChunkForBlocks(tileCount * rankBlocks, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = shrinkScratch(splits);
        int slots = weights.slots();
        long tilesOnDevice = parts.ring().ints(tileTable);
        parts.kernels().launchSgmvShrink(SgmvTiles.rowTiles(segments, tileCount), xs.ptr, xs.cols(),
                vs.ptr + 2L * vCol, vs.cols(), tilesOnDevice, table.device, table.ranks(slots), in, kChunk, scratch[0],
                scratch[1], tileCount, rankBlocks, splits);
    }

    /**
     * One launch for the whole group: grid (tiles, rank blocks of {@code w = v.cols / n}, splits · n), the
     * split count chosen for all n projections' blocks together; projection m's blocks read its own slot
     * table and count in their own split-K counters. Up to {@value KernelConstants#SGMV_GROUP_MAX} projections.
     */
    void shrinkGroup(CudaTensor xs, List<LoraWeights> group, Segments segments, CudaTensor vs) {
        String op = "sgmvShrinkGroup";
        int n = checkGroupSize(op, group);
        int w = vs.cols() / n;
        int slots = sameSlots(op, group);
        long[] tables = new long[SGMV_GROUP_MAX];
        for (int m = 0; m < n; m++) {
            tables[m] = checkShrink(op, xs, group.get(m), segments, vs, m * w, w).device;
        }
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            tables[m] = tables[0]; // padding, never read
        }
        int tileCount = SgmvTiles.count(xs.rows(), slots);
        if (tileCount == 0 || w == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        int in = xs.cols();
        int rankBlocks = ceilDiv(w, SHRINK_RANKS_PER_BLOCK);
        int kChunk = shrinkChunkForBlocks(n * tileCount * rankBlocks, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = shrinkScratch(splits);
        long tilesOnDevice = parts.ring().ints(tileTable);
        parts.kernels().launchSgmvShrinkGroup(SgmvTiles.rowTiles(segments, tileCount), xs.ptr, xs.cols(), vs.ptr,
                vs.cols(), w, tilesOnDevice, tables, slots, in, kChunk, splits, scratch[0], scratch[1], tileCount, rankBlocks, n);
    }

    /** Whether {@code matmulLora} of this group takes the fused decode kernel ({@link #fusedRows}). */
    boolean takesFused(int rows, List<LoraWeights> group, Segments segments, int vCols) {
        if (fusedLora() && group.size() <= SGMV_GROUP_MAX && vCols / group.size() <= FUSED_MAX_RANK) {
            int tileCount = SgmvTiles.count(rows, group.getFirst().slots());
            return tileCount > options.fusedMinTiles() && SgmvTiles.rowTiles(segments, tileCount);
        }
        return false;
    }

    /**
     * The LoRA add-on of a decode step (one-row tiles) in one launch: a cluster of
     * {@value KernelConstants#FUSED_CLUSTER} blocks per (row, projection) splits the shrink's inputs, adds the
     * partial sums through distributed shared memory, and splits the expand's outputs (sgmv.cu,
     * {@code sgmv_fused_row_group}). The checks are those of {@link #shrinkGroup} and {@link #expandGroup}; v,
     * whose width per projection bounds the rank as there, is not written.
     */
    void fusedRows(CudaTensor xs, List<LoraWeights> group, Segments segments, CudaTensor vs, CudaTensor ys,
                   int[] yCols) {
        String op = "matmulLora";
        int n = group.size();
        if (yCols.length != n) {
            throw ShapeChecks.fail(op, yCols.length + " output columns for " + n + " projections");
        }
        int w = vs.cols() / n;
        int slots = sameSlots(op, group);
        SlotTables.Table[] checked = new SlotTables.Table[n];
        for (int m = 0; m < n; m++) {
            LoraWeights weights = group.get(m);
            checked[m] = checkShrink(op, xs, weights, segments, vs, m * w, w);
            checkExpand(op, vs, m * w, weights, segments, ys, yCols[m]);
        }
        int[] outs = groupOutFeatures(op, checked, ys, yCols);
        int tileCount = SgmvTiles.count(xs.rows(), slots);
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        long t0 = checked[0].device;
        long[] tables = {t0, n > 1 ? checked[1].device : t0, n > 2 ? checked[2].device : t0};
        int[] cols = Arrays.copyOf(yCols, SGMV_GROUP_MAX);
        parts.kernels().launchSgmvFusedRowGroup(xs.ptr, xs.cols(), ys.ptr, ys.cols(), parts.ring().ints(tileTable),
                tables, slots, xs.cols(), cols, outs, tileCount, n);
        fusedLaunches++;
    }

    /** The fused decode kernel needs thread-block clusters: sm_90 and later only. */
    private boolean fusedLora() {
        return options.fusedLora() && parts.ctx().ccMajor >= 9;
    }

    /** How many times {@code matmulLora} took the fused kernel (host calls, replays included). */
    long fusedLaunches() {
        return fusedLaunches;
    }

    /** Grid: the fixed tile count × {@code ceil(out / 256)} output blocks, {@code out} being B's row count. */
    void expand(CudaTensor vs, int vCol, LoraWeights weights, Segments segments, CudaTensor ys, int yCol) {
        String op = "sgmvExpand";
        SlotTables.Table table = checkExpand(op, vs, vCol, weights, segments, ys, yCol);
        int outFeatures = outFeatures(op, table, ys, yCol, ys.cols());
        int tileCount = SgmvTiles.count(vs.rows(), weights.slots());
        if (tileCount == 0 || outFeatures == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        int slots = weights.slots();
        parts.kernels().launchSgmvExpand(vs.ptr + 2L * vCol, vs.cols(), ys.ptr, ys.cols(), yCol,
                parts.ring().ints(tileTable), table.bPointers(slots), table.ranks(slots), table.scales(slots),
                outFeatures, tileCount, ceilDiv(outFeatures, SGMV_THREADS));
    }

    /**
     * One launch for the whole group: grid (tiles, Σ ceil(out_m / 256)), projection m owning a run of output
     * blocks. out_m is B's row count; for a projection with no slot loaded (its blocks all exit) it is the
     * distance to the next projection's column, or to y's end, so that the grid does not change when an
     * adapter arrives (it is that distance for q|k|v and gate|up).
     */
    void expandGroup(CudaTensor vs, List<LoraWeights> group, Segments segments, CudaTensor ys, int[] yCols) {
        String op = "sgmvExpandGroup";
        int n = checkGroupSize(op, group);
        if (yCols.length != n) {
            throw ShapeChecks.fail(op, yCols.length + " output columns for " + n + " projections");
        }
        int w = vs.cols() / n;
        int slots = sameSlots(op, group);
        int[] starts = new int[SGMV_GROUP_MAX];
        int[] cols = new int[SGMV_GROUP_MAX];
        long[] tables = new long[SGMV_GROUP_MAX];
        SlotTables.Table[] checked = new SlotTables.Table[n];
        int blocks = 0;
        for (int m = 0; m < n; m++) {
            SlotTables.Table table = checkExpand(op, vs, m * w, group.get(m), segments, ys, yCols[m]);
            checked[m] = table;
            tables[m] = table.device;
            for (int s : segments.slots()) {
                if (s >= 0 && table.a[s] != null && table.rank[s] > w) {
                    throw ShapeChecks.fail(op, "v " + vs + " gives each of " + n + " projections " + w
                            + " columns, fewer than rank " + table.rank[s] + " of slot " + s);
                }
            }
        }
        int[] outs = groupOutFeatures(op, checked, ys, yCols);
        for (int m = 0; m < n; m++) {
            cols[m] = yCols[m];
            starts[m] = blocks;
            blocks += ceilDiv(outs[m], SGMV_THREADS);
        }
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            starts[m] = blocks;
            tables[m] = tables[0]; // padding, never read
        }
        int tileCount = SgmvTiles.count(vs.rows(), slots);
        if (tileCount == 0 || blocks == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        parts.kernels().launchSgmvExpandGroup(vs.ptr, vs.cols(), w, ys.ptr, ys.cols(), parts.ring().ints(tileTable),
                tables, slots, cols, outs, starts, tileCount, blocks);
    }

    private static int checkGroupSize(String op, List<LoraWeights> group) {
        int n = group.size();
        if (!(n >= 1 && n <= SGMV_GROUP_MAX)) {
            throw ShapeChecks.fail(op, n + " projections; the CUDA kernel takes 1 to " + SGMV_GROUP_MAX);
        }
        return n;
    }

    /**
     * Segments, the projection's slot table (A shapes), x's width against A's, and v's columns
     * {@code [vCol, vCol + width)} against the rank of every slot a segment uses; returns the table.
     */
    private SlotTables.Table checkShrink(String op, CudaTensor xs, LoraWeights weights, Segments segments,
                                         CudaTensor vs, int vCol, int width) {
        ShapeChecks.checkSegments(op, segments, weights, Math.min(xs.rows(), vs.rows()));
        if (!(vCol >= 0 && vCol <= vs.cols())) {
            throw ShapeChecks.fail(op, "column " + vCol + " is outside v " + vs);
        }
        SlotTables.Table t = slotTables.of(op, weights);
        for (int s : segments.slots()) {
            if (s >= 0 && t.a[s] != null) {
                if (t.inFeatures != xs.cols()) {
                    throw ShapeChecks.fail(op, "lora A of slot " + s + " " + t.a[s] + " takes " + t.inFeatures
                            + " inputs, x " + xs + " has " + xs.cols());
                }
                if (t.rank[s] > width) {
                    throw ShapeChecks.fail(op, "v " + vs + " has " + width + " columns from " + vCol
                            + ", fewer than rank " + t.rank[s] + " of slot " + s);
                }
            }
        }
        return t;
    }

    /**
     * Segments, the projection's slot table (B shapes), and for every slot a segment uses: v's columns from
     * {@code vCol} and y's from {@code yCol} hold its rank and B's outputs, the rank within the kernel's
     * limit; returns the table.
     */
    private SlotTables.Table checkExpand(String op, CudaTensor vs, int vCol, LoraWeights weights, Segments segments,
                                         CudaTensor ys, int yCol) {
        ShapeChecks.checkSegments(op, segments, weights, Math.min(vs.rows(), ys.rows()));
        SlotTables.Table t = slotTables.of(op, weights);
        for (int s : segments.slots()) {
            if (s >= 0 && t.a[s] != null) {
                int rank = t.rank[s];
                if (!(vCol >= 0 && vCol + rank <= vs.cols())) {
                    throw ShapeChecks.fail(op, "columns [" + vCol + ", " + (vCol + rank) + ") for rank " + rank
                            + " of slot " + s + " are outside v " + vs);
                }
                if (!(yCol >= 0 && yCol + t.outFeatures <= ys.cols())) {
                    throw ShapeChecks.fail(op, "columns [" + yCol + ", " + (yCol + t.outFeatures) + ") of lora B "
                            + t.b[s] + " are outside y " + ys);
                }
                if (rank > EXPAND_MAX_RANK) {
                    throw ShapeChecks.fail(op,
                            "rank " + rank + " of slot " + s + " is above the CUDA kernel's " + EXPAND_MAX_RANK);
                }
            }
        }
        return t;
    }

    /** (partials, arrival counters) of the split-K shrink, or zeros for one split (the kernel writes v). */
    private long[] shrinkScratch(int splits) {
        if (splits == 1) {
            return new long[2];
        }
        int target = SHRINK_BLOCKS_PER_SM * parts.ctx().multiprocessors;
        ensureWorkspace(target);
        return new long[] {workspace, workspace + 2L * target * SHRINK_PARTIAL_FLOATS * 4};
    }

    /**
     * Inputs per shrink block: all of them, or, when tiles × rank blocks would leave SMs idle, a share of
     * at least {@link #SHRINK_MIN_SPLIT} so that about {@link #SHRINK_BLOCKS_PER_SM} blocks run per SM. A
     * multiple of 8 (16-byte loads stay aligned). With {@code blocks < target} and
     * {@code splits ≤ ceil(target / blocks)}, blocks · splits stays below 2 · target, the workspace size.
     */
    int shrinkChunk(int tileCount, int vCols, int in) {
        return shrinkChunkForBlocks(tileCount * ceilDiv(vCols, SHRINK_RANKS_PER_BLOCK), in);
    }

    /** {@link #shrinkChunk} for a launch of {@code blocks} (tile, rank block) pairs, over all its projections. */
    private int shrinkChunkForBlocks(int blocks, int in) {
        int target = SHRINK_BLOCKS_PER_SM * parts.ctx().multiprocessors;
        int splits = 1;
        if (blocks < target && in >= 2 * SHRINK_MIN_SPLIT) {
            splits = Math.min(ceilDiv(target, blocks), in / SHRINK_MIN_SPLIT);
        }
        return roundUp(ceilDiv(in, splits), 8);
    }

    /** The slot count of a group's projections, which must all have the same. */
    private static int sameSlots(String op, List<LoraWeights> group) {
        int slots = group.getFirst().slots();
        for (int m = 1; m < group.size(); m++) {
            if (group.get(m).slots() != slots) {
                throw ShapeChecks.fail(op, "projection " + m + " has " + group.get(m).slots()
                        + " slots, projection 0 " + slots);
            }
        }
        return slots;
    }

    /**
     * Output columns of each projection of a group (padded to {@value KernelConstants#SGMV_GROUP_MAX} with
     * zeros): B's row count, or, for a projection with no slot loaded, the distance to the next projection's
     * column or to y's end, so that a launch's grid does not change when an adapter arrives.
     */
    private static int[] groupOutFeatures(String op, SlotTables.Table[] tables, CudaTensor ys, int[] yCols) {
        int[] outs = new int[SGMV_GROUP_MAX];
        for (int m = 0; m < tables.length; m++) {
            int end = ys.cols();
            for (int c : yCols) {
                if (c > yCols[m] && c < end) {
                    end = c;
                }
            }
            outs[m] = outFeatures(op, tables[m], ys, yCols[m], end);
        }
        return outs;
    }

    /**
     * Rows of B, the same for every occupied slot (it is the projection's output size, a shape of the
     * model); {@code end - yCol} while no slot is occupied (every tile then exits).
     */
    private static int outFeatures(String op, SlotTables.Table table, CudaTensor y, int yCol, int end) {
        if (!(yCol >= 0 && yCol <= end && end <= y.cols())) {
            throw ShapeChecks.fail(op, "column " + yCol + " is outside y " + y);
        }
        int out = table.outFeatures;
        if (out < 0) {
            return end - yCol;
        }
        if (yCol + out > y.cols()) {
            throw ShapeChecks.fail(op, "columns [" + yCol + ", " + (yCol + out) + ") of lora B are outside y " + y);
        }
        return out;
    }

    /**
     * The split-K scratch, allocated once at its largest size: {@code 2 · target} blocks' partial sums,
     * then {@code target} arrival counters, zeroed here; each launch leaves them zero again.
     */
    private void ensureWorkspace(int target) {
        if (workspace != 0) {
            return;
        }
        long partialBytes = 2L * target * SHRINK_PARTIAL_FLOATS * 4;
        workspace = parts.memory().alloc(partialBytes + 4L * target);
        parts.ctx().driver.memsetD32Async(workspace + partialBytes, 0, target, parts.ctx().stream);
    }

    /** Forgets the slot tables (their blocks go with the allocator's at close). */
    void clear() {
        slotTables.clear();
    }
}
