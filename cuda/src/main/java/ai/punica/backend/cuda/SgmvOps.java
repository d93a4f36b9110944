package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.KernelConstants.EXPAND_MAX_RANK;
import static ai.punica.backend.cuda.KernelConstants.FUSED_MAX_RANK;
import static ai.punica.backend.cuda.KernelConstants.SGMV_GROUP_MAX;
import static ai.punica.backend.cuda.KernelConstants.SGMV_THREADS;
import static ai.punica.backend.cuda.KernelConstants.SGMV_TILE_ROWS;
import static ai.punica.backend.cuda.KernelConstants.SHRINK_RANKS_PER_BLOCK;
import static ai.punica.backend.cuda.KernelConstants.TC_K_STEP;
import static ai.punica.backend.cuda.KernelConstants.TC_MAX_RANK;
import static ai.punica.backend.cuda.KernelConstants.TC_OUT_COLS;
import static ai.punica.backend.cuda.KernelConstants.TC_ROWS;
import static ai.punica.backend.cuda.Shapes.ceilDiv;
import static ai.punica.backend.cuda.Shapes.roundUp;

import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Segmented LoRA (Punica's SGMV, sgmv.cu): the shrink {@code v = x·Aᵀ} and the expand
 * {@code y += scale·v·Bᵀ} of every row's adapter slot, one projection at a time or a group of up to three
 * that read the same input (q|k|v, gate|up) in one launch; for decode steps on sm_90+ both in one cluster
 * launch. Segments of {@link CudaOptions#sgmvTcMinRows} rows or more (prefill chunks) run both halves as
 * grouped GEMMs on tensor cores (sgmv_tc.cu), the shorter segments of the same call on the CUDA-core kernels. The CUDA-core launches' shapes
 * depend on tensor shapes only (step graphs); which kernels a step takes, and the tensor-core grids
 * ({@link #gridTiles}), depend on its segments.
 *
 * <pre>
 *  segments ─► SgmvTiles (tile table) ─► ints ─┐   LoraWeights ─► SlotTables (A, B, rank, scale per slot) ─┐
 *  x ─► sgmv_shrink[_group][_row] ─(split-K partials, last block adds)─► v ─► sgmv_expand[_group] ─► y += …
 *  x ─► sgmv_fused_row_group (cluster of 4 per (row, projection): shrink, DSMEM sum, expand) ─► y += …
 *  x ─► sgmv_tc_shrink (64-row tiles, mma, split-K, last block adds) ─► v ─► sgmv_tc_expand (64 × 128 mma) ─► y += …
 * </pre>
 */
final class SgmvOps {
    /** A split-K shrink block covers at least this many inputs (fewer would spend more on the reduction). */
    private static final int SHRINK_MIN_SPLIT = 512;
    /** Split-K aims at this many shrink blocks per SM (a decode batch has too few tiles to fill the GPU). */
    private static final int SHRINK_BLOCKS_PER_SM = 4;
    /** Fp32 partial sums one shrink block leaves for the split-K reduction: 32 ranks × 8 rows. */
    private static final int SHRINK_PARTIAL_FLOATS = SHRINK_RANKS_PER_BLOCK * SGMV_TILE_ROWS;

    /** A split of the tensor-core shrink covers at least this many inputs. */
    private static final int TC_MIN_SPLIT = 256;
    /** The tensor-core shrink splits its inputs until about this many blocks run per SM. */
    private static final int TC_BLOCKS_PER_SM = 2;
    /** Fp32 partial sums one tensor-core shrink block leaves for the split-K reduction: 64 rows × 64 ranks. */
    private static final int TC_PARTIAL_FLOATS = TC_ROWS * TC_MAX_RANK;

    /** The CUDA-core shrinks' split-K: inputs in multiples of 8 (16-byte loads stay aligned). */
    private static final SplitK SHRINK_SPLIT =
            new SplitK(SHRINK_MIN_SPLIT, 8, SHRINK_BLOCKS_PER_SM, SHRINK_PARTIAL_FLOATS);
    /** The tensor-core shrink's split-K: inputs in multiples of {@value KernelConstants#TC_K_STEP}. */
    private static final SplitK TC_SPLIT = new SplitK(TC_MIN_SPLIT, TC_K_STEP, TC_BLOCKS_PER_SM, TC_PARTIAL_FLOATS);

    private final DeviceParts parts;
    private final SlotTables slotTables;
    private final SgmvTiles tiles;
    /** Each split-K's scratch (device address), allocated when first needed. */
    private final Map<SplitK, Long> scratchBases = new HashMap<>();
    private long tcLaunches;
    /** fusedLora and fusedMinTiles are read from here. */
    private final CudaOptions options;
    private long fusedLaunches;
    private long fusedWideLaunches;

    SgmvOps(DeviceParts parts, CudaOptions options) {
        this.options = options;
        this.parts = parts;
        this.slotTables = new SlotTables(parts);
        this.tiles = new SgmvTiles(options.rowTilesUpTo(), options.sgmvTcMinRows());
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
        Path path = path(segments, table);
        if (path != Path.CUDA_CORES) {
            long[] tables = {table.device, table.device, table.device};
            tensorCoreShrink(op, xs, tables, weights.slots(), longSegments(segments, path), vs.ptr + 2L * vCol,
                    vs.cols(), 0, 1);
            if (path == Path.TENSOR_CORES) {
                return;
            }
            segments = split(segments).shortOnes();
        }
        int tileCount = SgmvTiles.count(xs.rows(), weights.slots());
        int rankBlocks = ceilDiv(vs.cols() - vCol, SHRINK_RANKS_PER_BLOCK);
        if (tileCount == 0 || rankBlocks == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        int in = xs.cols();
        int kChunk = chunk(SHRINK_SPLIT, tileCount * rankBlocks, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = scratch(SHRINK_SPLIT, splits);
        int slots = weights.slots();
        long tilesOnDevice = parts.ring().ints(tileTable);
        parts.kernels().launchSgmvShrink(tiles.rowTiles(segments, tileCount), xs.ptr, xs.cols(),
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
        SlotTables.Table[] checked = new SlotTables.Table[n];
        for (int m = 0; m < n; m++) {
            checked[m] = checkShrink(op, xs, group.get(m), segments, vs, m * w, w);
            tables[m] = checked[m].device;
        }
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            tables[m] = tables[0]; // padding, never read
        }
        Path path = path(segments, checked);
        if (path != Path.CUDA_CORES) {
            tensorCoreShrink(op, xs, tables, slots, longSegments(segments, path), vs.ptr, vs.cols(), w, n);
            if (path == Path.TENSOR_CORES) {
                return;
            }
            segments = split(segments).shortOnes();
        }
        int tileCount = SgmvTiles.count(xs.rows(), slots);
        if (tileCount == 0 || w == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        int in = xs.cols();
        int rankBlocks = ceilDiv(w, SHRINK_RANKS_PER_BLOCK);
        int kChunk = chunk(SHRINK_SPLIT, n * tileCount * rankBlocks, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = scratch(SHRINK_SPLIT, splits);
        long tilesOnDevice = parts.ring().ints(tileTable);
        parts.kernels().launchSgmvShrinkGroup(tiles.rowTiles(segments, tileCount), xs.ptr, xs.cols(), vs.ptr,
                vs.cols(), w, tilesOnDevice, tables, slots, in, kChunk, splits, scratch[0], scratch[1], tileCount, rankBlocks, n);
    }

    /** Whether {@code matmulLora} of this group takes the fused decode kernel ({@link #fusedRows}). */
    boolean takesFused(int rows, List<LoraWeights> group, Segments segments, int vCols) {
        if (fusedLora() && group.size() <= SGMV_GROUP_MAX && vCols / group.size() <= FUSED_MAX_RANK) {
            int tileCount = SgmvTiles.count(rows, group.getFirst().slots());
            return tileCount > options.fusedMinTiles() && tiles.rowTiles(segments, tileCount);
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
        boolean wide = wideClusters(tileCount, n);
        parts.kernels().launchSgmvFusedRowGroup(xs.ptr, xs.cols(), ys.ptr, ys.cols(), parts.ring().ints(tileTable),
                tables, slots, xs.cols(), cols, outs, tileCount, n, wide);
        fusedLaunches++;
        if (wide) {
            fusedWideLaunches++;
        }
    }

    /**
     * Whether a fused launch of {@code tileCount} tiles and {@code projections} projections takes clusters of
     * {@value KernelConstants#FUSED_CLUSTER_WIDE} ({@link CudaOptions#wideClusters()}): when clusters of
     * {@value KernelConstants#FUSED_CLUSTER} would be fewer blocks than SMs (o and down of a 32-row step: 128 blocks
     * on an H200's 132 SMs), so that each block has half the inputs and outputs. From shapes only (graphs replay it).
     */
    boolean wideClusters(int tileCount, int projections) {
        return options.wideClusters()
                && (long) KernelConstants.FUSED_CLUSTER * tileCount * projections < parts.ctx().multiprocessors;
    }

    /** The fused decode kernel needs thread-block clusters: sm_90 and later only. */
    private boolean fusedLora() {
        return options.fusedLora() && parts.ctx().ccMajor >= 9;
    }

    /** How many times {@code matmulLora} took the fused kernel (host calls, replays included). */
    long fusedLaunches() {
        return fusedLaunches;
    }

    /** How many of {@link #fusedLaunches} took clusters of {@value KernelConstants#FUSED_CLUSTER_WIDE}. */
    long fusedWideLaunches() {
        return fusedWideLaunches;
    }

    /** Grid: the fixed tile count × {@code ceil(out / 256)} output blocks, {@code out} being B's row count. */
    void expand(CudaTensor vs, int vCol, LoraWeights weights, Segments segments, CudaTensor ys, int yCol) {
        String op = "sgmvExpand";
        SlotTables.Table table = checkExpand(op, vs, vCol, weights, segments, ys, yCol);
        int outFeatures = outFeatures(op, table, ys, yCol, ys.cols());
        Path path = path(segments, table);
        if (path != Path.CUDA_CORES) {
            int blocks = ceilDiv(outFeatures, TC_OUT_COLS);
            tensorCoreExpand(op, vs, vs.ptr + 2L * vCol, 0, new long[] {table.device, table.device, table.device},
                    weights.slots(), longSegments(segments, path), ys, new int[] {yCol, 0, 0},
                    new int[] {outFeatures, 0, 0}, new int[] {0, blocks, blocks}, blocks);
            if (path == Path.TENSOR_CORES) {
                return;
            }
            segments = split(segments).shortOnes();
        }
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
        System.arraycopy(yCols, 0, cols, 0, n);
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            tables[m] = tables[0]; // padding, never read
        }
        Path path = path(segments, checked);
        if (path != Path.CUDA_CORES) {
            int tcBlocks = blockStarts(outs, n, TC_OUT_COLS, starts);
            tensorCoreExpand(op, vs, vs.ptr, w, tables, slots, longSegments(segments, path), ys, cols, outs, starts,
                    tcBlocks);
            if (path == Path.TENSOR_CORES) {
                return;
            }
            segments = split(segments).shortOnes();
        }
        int blocks = blockStarts(outs, n, SGMV_THREADS, starts);
        int tileCount = SgmvTiles.count(vs.rows(), slots);
        if (tileCount == 0 || blocks == 0) {
            return;
        }
        int[] tileTable = tiles.tiles(op, segments, tileCount);
        parts.kernels().launchSgmvExpandGroup(vs.ptr, vs.cols(), w, ys.ptr, ys.cols(), parts.ring().ints(tileTable),
                tables, slots, cols, outs, starts, tileCount, blocks);
    }

    /** Which kernels an SGMV call takes ({@link #path}). */
    private enum Path { CUDA_CORES, TENSOR_CORES, BOTH }

    /** A step's segments split by length at {@code minRows}: the other part's slots set to -1 in each. */
    private record SplitSegments(Segments source, int minRows, Segments longOnes, Segments shortOnes) {
    }

    /** The last split made: every projection of every layer of a step shares one {@link Segments}. */
    private SplitSegments lastSplit;

    /**
     * Which kernels an SGMV call takes. With {@link CudaOptions#sgmvTcMinRows} on, adapted segments of at least
     * that many rows run on tensor cores, shorter ones on the CUDA-core kernels; a step with both kinds launches
     * both (a prefill chunk beside decode rows), each over its own segments. Everything stays on CUDA cores when
     * the switch is 0, when no segment is that long, when a slot the step uses has a rank above
     * {@value KernelConstants#TC_MAX_RANK} in any projection of the call, and when the step is decode-shaped
     * (one-row tiles, {@link SgmvTiles#rowTiles}: those keep the decode kernels and the fused one). Shrink and
     * expand decide alike from the same segments and tables.
     */
    private Path path(Segments segments, SlotTables.Table... tables) {
        int minRows = options.sgmvTcMinRows();
        if (minRows <= 0) {
            return Path.CUDA_CORES;
        }
        int longOnes = 0;
        int shortOnes = 0;
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            int rows = segments.starts()[i + 1] - segments.starts()[i];
            if (slot < 0 || rows == 0) {
                continue;
            }
            for (SlotTables.Table t : tables) {
                if (slot < t.rank.length && t.a[slot] != null && t.rank[slot] > TC_MAX_RANK) {
                    return Path.CUDA_CORES;
                }
            }
            if (rows >= minRows) {
                longOnes++;
            } else {
                shortOnes++;
            }
        }
        int slots = tables[0].rank.length;
        if (longOnes == 0 || tiles.rowTiles(segments, SgmvTiles.count(segments.rows(), slots))) {
            return Path.CUDA_CORES;
        }
        return shortOnes == 0 ? Path.TENSOR_CORES : Path.BOTH;
    }

    /** The segments the tensor-core kernels take on this path. */
    private Segments longSegments(Segments segments, Path path) {
        return path == Path.BOTH ? split(segments).longOnes() : segments;
    }

    /** {@code segments} split at {@code sgmvTcMinRows} rows (the same objects for every call of a step). */
    private SplitSegments split(Segments segments) {
        int minRows = options.sgmvTcMinRows();
        SplitSegments last = lastSplit;
        if (last != null && last.source() == segments && last.minRows() == minRows) {
            return last;
        }
        int[] longSlots = segments.slots().clone();
        int[] shortSlots = segments.slots().clone();
        for (int i = 0; i < segments.count(); i++) {
            if (segments.starts()[i + 1] - segments.starts()[i] >= minRows) {
                shortSlots[i] = -1;
            } else {
                longSlots[i] = -1;
            }
        }
        lastSplit = new SplitSegments(segments, minRows, new Segments(segments.starts(), longSlots),
                new Segments(segments.starts(), shortSlots));
        return lastSplit;
    }

    /** starts[m] = the first output block of projection m for blocks of {@code cols} outputs; returns the total. */
    private static int blockStarts(int[] outs, int n, int cols, int[] starts) {
        int blocks = 0;
        for (int m = 0; m < n; m++) {
            starts[m] = blocks;
            blocks += ceilDiv(outs[m], cols);
        }
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            starts[m] = blocks;
        }
        return blocks;
    }

    /**
     * {@code sgmv_tc_shrink}: grid (64-row tiles, splits, projections). The inputs are split when the tiles
     * alone would leave SMs idle (about {@value #TC_BLOCKS_PER_SM} blocks per SM, each split at least
     * {@value #TC_MIN_SPLIT} inputs, a multiple of {@value KernelConstants#TC_K_STEP}: {@link SplitK}).
     */
    private void tensorCoreShrink(String op, CudaTensor xs, long[] tables, int slots, Segments segments, long v,
                                  int vStride, int vWidth, int n) {
        int[] tileTable = tiles.tensorCoreTiles(op, segments, SgmvTiles.tensorCoreCount(xs.rows(), slots));
        int tileCount = gridTiles(tileTable);
        if (tileCount == 0) {
            return;
        }
        int in = xs.cols();
        int kChunk = chunk(TC_SPLIT, tileCount * n, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = scratch(TC_SPLIT, splits);
        long tilesOnDevice = parts.ring().ints(tileTable);
        parts.kernels().launchSgmvTcShrink(xs.ptr, xs.cols(), v, vStride, vWidth, tilesOnDevice, tables, slots, in,
                kChunk, scratch[0], scratch[1], tileCount, splits, n);
        tcLaunches++;
    }

    /** {@code sgmv_tc_expand}: grid (64-row tiles, Σ ceil(out_m / 128)), projection m owning a run of blocks. */
    private void tensorCoreExpand(String op, CudaTensor vs, long v, int vWidth, long[] tables, int slots,
                                  Segments segments, CudaTensor ys, int[] yCols, int[] outs, int[] starts, int blocks) {
        int[] tileTable = tiles.tensorCoreTiles(op, segments, SgmvTiles.tensorCoreCount(vs.rows(), slots));
        int tileCount = gridTiles(tileTable);
        if (tileCount == 0 || blocks == 0) {
            return;
        }
        parts.kernels().launchSgmvTcExpand(v, vs.cols(), vWidth, ys.ptr, ys.cols(), parts.ring().ints(tileTable),
                tables, slots, yCols, outs, starts, tileCount, blocks);
        tcLaunches++;
    }

    /**
     * Tiles a tensor-core launch covers: the table's real tiles (they come first) rounded up to a power of two,
     * at most the table's length. The shape-only bound on tiles ({@link SgmvTiles#tensorCoreCount}) counts a
     * tile per slot, far above a prefill chunk's few adapters (64 slots, 1024 rows: 79 against 16), and the
     * split count follows the tiles; the rounding keeps a recorded decode step that takes these kernels (long
     * segments of one adapter) from changing its grid with every few rows.
     */
    private static int gridTiles(int[] tileTable) {
        int length = tileTable.length / 3;
        int real = 0;
        while (real < length && tileTable[3 * real + 1] > 0) {
            real++;
        }
        int pow2 = Integer.highestOneBit(real);
        return Math.min(length, pow2 < real ? 2 * pow2 : pow2);
    }

    /** Shrinks and expands run on tensor cores so far (host calls). */
    long tensorCoreLaunches() {
        return tcLaunches;
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

    /**
     * Inputs per block of a one-projection shrink ({@link SplitK#chunk}): all of them, or, when tiles × rank
     * blocks would leave SMs idle, a share of at least {@link #SHRINK_MIN_SPLIT} so that about
     * {@link #SHRINK_BLOCKS_PER_SM} blocks run per SM, a multiple of 8.
     */
    int shrinkChunk(int tileCount, int vCols, int in) {
        return chunk(SHRINK_SPLIT, tileCount * ceilDiv(vCols, SHRINK_RANKS_PER_BLOCK), in);
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
     * How a shrink splits its inputs (split-K). A launch of {@code blocks} blocks is split when they alone would
     * leave SMs idle: into about {@code blocksPerSm} blocks per SM (the target), each split at least
     * {@code minSplit} inputs, a multiple of {@code step}. With {@code blocks < target} and
     * {@code splits ≤ ceil(target / blocks)}, blocks · splits stays below 2 · target: the scratch holds 2 · target
     * blocks' {@code partialFloats} fp32 partial sums, then target arrival counters.
     */
    private record SplitK(int minSplit, int step, int blocksPerSm, int partialFloats) {
        /** Inputs per block of a launch of {@code blocks} blocks over {@code in} inputs (all of them: no split). */
        int chunk(int blocks, int in, int multiprocessors) {
            int target = blocksPerSm * multiprocessors;
            int splits = 1;
            if (blocks < target && in >= 2 * minSplit) {
                splits = Math.min(ceilDiv(target, blocks), in / minSplit);
            }
            return roundUp(ceilDiv(in, splits), step);
        }
    }

    /**
     * {@link SplitK#chunk} on this device; all {@code in} inputs in batch-invariant mode (the split follows the
     * step's tile count, and with it the order a row's sum is added up in).
     */
    private int chunk(SplitK split, int blocks, int in) {
        if (options.batchInvariant()) {
            return roundUp(in, split.step());
        }
        return split.chunk(blocks, in, parts.ctx().multiprocessors);
    }

    /**
     * (partial sums, arrival counters) of a launch of {@code splits} splits, or zeros for one split (the kernel
     * writes v). Each split-K's scratch is allocated once, at its largest size, when first needed; its counters
     * are zeroed here and each launch leaves them zero again.
     */
    private long[] scratch(SplitK split, int splits) {
        if (splits == 1) {
            return new long[2];
        }
        int target = split.blocksPerSm() * parts.ctx().multiprocessors;
        long partialBytes = 2L * target * split.partialFloats() * 4;
        long base = scratchBases.computeIfAbsent(split, k -> {
            long p = parts.memory().alloc(partialBytes + 4L * target);
            parts.ctx().driver.memsetD32Async(p + partialBytes, 0, target, parts.ctx().stream);
            return p;
        });
        return new long[] {base, base + partialBytes};
    }

    /** Forgets the slot tables (their blocks go with the allocator's at close). */
    void clear() {
        slotTables.clear();
    }
}
