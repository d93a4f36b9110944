package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.KernelConstants.ATT_MAX_GROUP;
import static ai.punica.backend.cuda.KernelConstants.ATT_MAX_HEAD_DIM;
import static ai.punica.backend.cuda.KernelConstants.ATT_TILE;
import static ai.punica.backend.cuda.KernelConstants.ATT_TC_BLOCK_M;
import static ai.punica.backend.cuda.KernelConstants.ATT_TC_BLOCK_N;
import static ai.punica.backend.cuda.Shapes.ceilDiv;
import static ai.punica.backend.cuda.Shapes.roundUp;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.KvStorage;
import ai.punica.backend.RopeTable;
import ai.punica.backend.ShapeChecks;
import java.util.ArrayList;
import java.util.List;

/**
 * The paged KV cache and attention over it (attention.cu, attention_tc.cu). Which kernel a step takes:
 * <ul>
 *   <li>a decode step (one query row per sequence): the decode kernel;</li>
 *   <li>a step with a sequence of at least {@code tensorCoreMinRows} query rows (prefill chunks, and the decode
 *       rows that share their step), head size 32, 64, 96 or 128: the tensor-core kernel (FlashAttention-2 tiles of 64
 *       matrix rows, mma.sync), unless {@code tensorCoreAttention} is off;</li>
 *   <li>anything else: the general CUDA-core kernel, one block per (row, KV head).</li>
 * </ul>
 * All three split long contexts flash-decoding style into a number of splits fixed by shapes, merged by a
 * second kernel:
 *
 * <pre>
 *  qkv ─► rope_append_kv ─► K/V pages of the layer
 *  qkv, K/V pages, page tables ─► attention_decode_l*_g* | attention_prefill_tc_h* | attention_paged ─┬ 1 split ─► out
 *                                                   └ n splits ─► partial (acc, m, l) ─► attention_merge ─► out
 * </pre>
 */
final class PagedAttention {
    /** Most flash-decoding splits of one row (both attention kernels). */
    private static final int ATT_MAX_SPLITS = 32;

    private final DeviceParts parts;
    private final DenseOps dense;
    private final boolean decodeKernel;
    private final boolean tensorCoreKernel;
    private final int tensorCoreMinRows;
    /** The kernel the last attention call launched (tests and benchmarks check the path they meant). */
    private String lastKernel = "";
    /** Decode attention splits rows until there are this many blocks per SM (the grid fills the GPU a few times). */
    private final int decodeBlocksPerSm;
    /** Workspaces outgrown by a larger batch: kernels in flight or captured graphs may still use them. */
    private final List<Long> retiredWorkspaces = new ArrayList<>();
    /** The splits' partial results. */
    private final GrowingBuffer workspace = new GrowingBuffer("the attention workspace", false);
    /** Decode attention merges its own splits ({@link CudaOptions#decodeMerge()}): one arrival counter per block row. */
    private final boolean mergeInDecode;
    /** The decode kernel's arrival counters, 4 bytes each: zero between launches (the last block of a row resets its). */
    private final GrowingBuffer arrivals = new GrowingBuffer("the decode attention's arrival counters", true);
    /** The batch (and cache) last checked: the layers of a step pass the same immutable batch. */
    private AttentionBatch checkedBatch;
    private CudaKvStorage checkedCache;
    /**
     * Batch-invariant mode ({@link CudaOptions#batchInvariant()}): every step takes the general kernel with
     * {@value #INVARIANT_SPLITS} splits, so a row's keys are cut and merged the same way whatever the step holds.
     */
    private final boolean invariant;
    static final int INVARIANT_SPLITS = 8;

    PagedAttention(DeviceParts parts, DenseOps dense, CudaOptions options) {
        this.parts = parts;
        this.dense = dense;
        this.decodeKernel = options.decodeAttention();
        this.decodeBlocksPerSm = options.decodeBlocksPerSm();
        this.tensorCoreKernel = options.tensorCoreAttention();
        this.tensorCoreMinRows = options.tensorCoreMinRows();
        this.invariant = options.batchInvariant();
        this.mergeInDecode = options.decodeMerge();
    }

    KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        if (numLayers < 1 || numPages < 1 || pageSize < 1 || numKvHeads < 1 || headDim < 1) {
            throw new IllegalArgumentException("KV cache of " + numLayers + " layers, " + numPages + " pages of "
                    + pageSize + ", " + numKvHeads + " heads of " + headDim);
        }
        CudaKvStorage probe = new CudaKvStorage(parts.memory(), 0, numLayers, numPages, pageSize, numKvHeads, headDim);
        long ptr = parts.memory().alloc(probe.totalBytes());
        parts.ctx().driver.memsetD32Async(ptr, 0, probe.totalBytes() / 4, parts.ctx().stream);
        return new CudaKvStorage(parts.memory(), ptr, numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    void appendKv(CudaKvStorage cache, int layer, CudaTensor q, int kCol, int vCol, int[] slotMapping) {
        checkAppendKv(cache, layer, q, kCol, vCol, slotMapping);
        if (slotMapping.length == 0) {
            return;
        }
        int kvCols = cache.numKvHeads() * cache.headDim();
        parts.kernels().launchAppendKv(q.ptr, q.cols(), kCol, vCol, parts.ring().ints(slotMapping), cache.keys(layer),
                cache.values(layer), kvCols, slotMapping.length, Math.min(256, roundUp(kvCols, 32)));
    }

    private static void checkAppendKv(CudaKvStorage cache, int layer, CudaTensor q, int kCol, int vCol,
                                      int[] slotMapping) {
        Shapes.requireRows(q, slotMapping.length, "qkv");
        int kvCols = cache.numKvHeads() * cache.headDim();
        if (layer < 0 || layer >= cache.numLayers() || kCol < 0 || vCol < 0 || kCol + kvCols > q.cols()
                || vCol + kvCols > q.cols()) {
            throw new IllegalArgumentException("appendKv layer " + layer + ", columns k " + kCol + " v " + vCol + " of "
                    + kvCols + " do not fit " + q + " / " + cache.numLayers() + " layers");
        }
        long slots = cache.slotsPerLayer();
        for (int s : slotMapping) {
            if (s >= slots) {
                throw new IllegalArgumentException("slot " + s + " is past the cache's " + slots + " slots");
            }
        }
    }

    /**
     * One kernel: rope on the query and key heads of each row, the rotated keys written to the cache from
     * registers, the values copied; equal to rope then appendKv. Block per row; cos/sin of the row's
     * angles once in shared memory (headDim floats). With {@code lora} (null: none), the q|k|v LoRA add-on kept
     * apart: each element summed with it (rounded to bf16) before it is rotated or copied, and left so in q.
     */
    void ropeAppendKv(CudaTensor q, CudaTensor lora, int[] positions, RopeTable rope, int numHeads, int numKvHeads,
                      int headDim, CudaKvStorage cache, int layer, int kCol, int vCol, int[] slotMapping) {
        ShapeChecks.checkRopeAppendKvLayout(numHeads, numKvHeads, headDim, cache, kCol, vCol);
        if (lora != null) {
            Shapes.requireSameShape(q, lora);
        }
        DenseOps.checkRope(q, positions, rope, numHeads + numKvHeads, headDim);
        checkAppendKv(cache, layer, q, kCol, vCol, slotMapping);
        if (positions.length == 0) {
            return;
        }
        int heads = numHeads + numKvHeads;
        // Work items per row: 8 rotation pairs each when the row allows 16-byte accesses, else single pairs.
        boolean vector = headDim % 16 == 0 && q.cols() % 8 == 0 && vCol % 8 == 0;
        int items = heads * (vector ? headDim / 16 : headDim / 2);
        int threads = Math.min(1024, Math.max(64, roundUp(items, 32)));
        long positionsOnDevice = parts.ring().ints(positions);
        long invFreq = dense.ropeTable(rope);
        long slots = parts.ring().ints(slotMapping);
        parts.kernels().launchRopeAppendKv(q.ptr, q.cols(), positionsOnDevice, invFreq, numHeads, numKvHeads, headDim,
                rope.attentionFactor(), vCol, slots, cache.keys(layer), cache.values(layer), lora == null ? 0 : lora.ptr,
                positions.length, threads);
    }

    void attention(CudaTensor q, CudaKvStorage cache, int layer, AttentionBatch batch, AttentionShape shape,
                   CudaTensor o) {
        int rows = batch.numRows();
        int hd = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        Shapes.requireRows(q, rows, "qkv");
        Shapes.requireRows(o, rows, "out");
        if (shape.qCols() > q.cols() || o.cols() < shape.qCols() || shape.numKvHeads() != cache.numKvHeads()
                || hd != cache.headDim() || batch.pageSize() != cache.pageSize() || layer < 0 || layer >= cache.numLayers()) {
            throw new IllegalArgumentException("attention shapes do not fit: " + shape + ", qkv " + q + ", out " + o
                    + ", cache " + cache.numKvHeads() + "x" + cache.headDim() + " pages of " + cache.pageSize());
        }
        if (hd % 8 != 0 || hd > ATT_MAX_HEAD_DIM || group > ATT_MAX_GROUP) {
            throw new UnsupportedOperationException("the CUDA attention kernel takes head sizes that are multiples of 8"
                    + " up to " + ATT_MAX_HEAD_DIM + " and up to " + ATT_MAX_GROUP + " query heads per KV head; got "
                    + hd + " and " + group);
        }
        if (batch != checkedBatch || cache != checkedCache) {
            checkBatch(batch, cache);
            checkedBatch = batch;
            checkedCache = cache;
        }
        if (rows == 0) {
            return;
        }
        if (decodeKernel && oneRowPerSequence(batch)) {
            decode(q, cache, layer, batch, shape, o);
        } else if (tensorCoreKernel && tensorCoreFits(q, shape, o) && mostQueryRows(batch) >= tensorCoreMinRows) {
            tensorCore(q, cache, layer, batch, shape, o);
        } else {
            general(q, cache, layer, batch, shape, o);
        }
    }

    /** The kernel the last {@link #attention} call launched ("" before the first, or when it had no rows). */
    String lastKernel() {
        return lastKernel;
    }

    /**
     * Sequences, rows and page tables agree: rows ascend, every query row has a position ≥ 0, every
     * sequence has the pages its context needs, and those pages exist. The kernels trust all of this.
     */
    private static void checkBatch(AttentionBatch batch, CudaKvStorage cache) {
        int seqs = batch.numSequences();
        int[] queryStarts = batch.queryStarts();
        int[] ptStarts = batch.pageTableStarts();
        int[] pageTables = batch.pageTables();
        if (queryStarts.length != seqs + 1 || queryStarts[0] != 0 || ptStarts.length < seqs) {
            throw new IllegalArgumentException("attention batch of " + seqs + " sequences has " + queryStarts.length
                    + " queryStarts (needs " + (seqs + 1) + ", from 0) and " + ptStarts.length + " pageTableStarts");
        }
        for (int s = 0; s < seqs; s++) {
            int queries = queryStarts[s + 1] - queryStarts[s];
            int context = batch.contextLens()[s];
            if (queries < 0) {
                throw new IllegalArgumentException("queryStarts decrease at sequence " + s + ": " + queryStarts[s] + " > "
                        + queryStarts[s + 1]);
            }
            if (context < queries) {
                throw new IllegalArgumentException("sequence " + s + " has " + queries + " query rows but contextLen "
                        + context + ": its first row (row " + queryStarts[s] + ") would have position " + (context - queries));
            }
            int needed = ceilDiv(context, batch.pageSize());
            int start = ptStarts[s];
            int available = (s + 1 < ptStarts.length ? ptStarts[s + 1] : pageTables.length) - start;
            if (start < 0 || needed > available || start + needed > pageTables.length) {
                throw new IllegalArgumentException("sequence " + s + " has " + context + " tokens but only "
                        + Math.max(0, Math.min(available, pageTables.length - start)) + " pages of " + batch.pageSize()
                        + " (pageTables from " + start + ")");
            }
            for (int i = start; i < start + needed; i++) {
                if (pageTables[i] < 0 || pageTables[i] >= cache.numPages()) {
                    throw new IllegalArgumentException("page " + pageTables[i] + " (pageTables[" + i + "], sequence "
                            + s + ") is outside the cache's " + cache.numPages() + " pages");
                }
            }
        }
    }

    /** A decode step: every sequence has exactly one query row (its newest token). */
    private static boolean oneRowPerSequence(AttentionBatch batch) {
        int[] queryStarts = batch.queryStarts();
        for (int s = 0; s < batch.numSequences(); s++) {
            if (queryStarts[s + 1] - queryStarts[s] != 1) {
                return false;
            }
        }
        return true;
    }

    /**
     * Decode attention ({@code attention_decode_l*_g*}): one block of 128 threads per (row, KV head, pass of
     * up to 8 of its query heads, split); lanes split the head dimension, 8 bf16 each. The number of splits
     * depends on shapes and the SM count only, so the launch can be replayed from a CUDA graph: each block
     * finds its token range from its row's context length in the kernel.
     */
    private void decode(CudaTensor q, CudaKvStorage cache, int layer, AttentionBatch batch, AttentionShape shape,
                        CudaTensor o) {
        int rows = batch.numRows();
        int hd = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        int headsPerPass = decodeHeadsPerPass(group);
        int lanes = hd <= 64 ? 8 : hd <= 128 ? 16 : 32;
        long blocks = decodeBlocks(rows, shape);
        if (blocks > Integer.MAX_VALUE) {
            throw new UnsupportedOperationException("decode attention over " + rows + " rows of " + shape
                    + " needs more than 2^31 blocks");
        }
        int splits = decodeSplits(rows, shape);
        long[] partials = partials(rows, shape, splits);
        boolean mergeHere = mergeInDecode && splits > 1;
        if (mergeHere) {
            arrivals.ensure(4 * blocks);
        }
        Kernels.AttentionTables tables = stageTables(batch, false);
        parts.kernels().launchAttentionDecode(lanes, headsPerPass, q, cache, layer, tables, shape, o, partials,
                mergeHere ? arrivals.ptr : 0, (int) blocks, splits);
        lastKernel = "attention_decode_l" + lanes + "_g" + headsPerPass;
        if (!mergeHere) {
            merge(partials, rows, shape, splits, o);
        }
    }

    /** Decode blocks of a step of {@code rows} rows: one per (row, KV head, pass of query heads). */
    private static long decodeBlocks(int rows, AttentionShape shape) {
        int group = shape.numHeads() / shape.numKvHeads();
        return (long) rows * shape.numKvHeads() * ceilDiv(group, decodeHeadsPerPass(group));
    }

    /** Query heads one decode block carries: the group, rounded up to 1, 2, 4 or 8 (larger groups take passes of 8). */
    private static int decodeHeadsPerPass(int group) {
        return group <= 2 ? group : group <= 4 ? 4 : 8;
    }

    /**
     * Flash-decoding splits of a decode step of {@code rows} rows: enough blocks for
     * {@code decodeBlocksPerSm} per SM, at most {@link #ATT_MAX_SPLITS}. Shapes and the device only.
     */
    int decodeSplits(int rows, AttentionShape shape) {
        int group = shape.numHeads() / shape.numKvHeads();
        long blocks = (long) rows * shape.numKvHeads() * ceilDiv(group, decodeHeadsPerPass(group));
        return Math.clamp(ceilDiv((long) decodeBlocksPerSm * parts.ctx().multiprocessors, Math.max(1L, blocks)), 1,
                ATT_MAX_SPLITS);
    }

    /**
     * Any mix of prefill and decode rows ({@code attention_paged}): one block per (row, KV head, split), the
     * splits fixed by shapes (enough blocks for 4 per SM, at most {@link #ATT_MAX_SPLITS}).
     */
    private void general(CudaTensor q, CudaKvStorage cache, int layer, AttentionBatch batch, AttentionShape shape,
                         CudaTensor o) {
        int rows = batch.numRows();
        int hd = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        int splits = generalSplits(rows, shape);
        long[] partials = partials(rows, shape, splits);
        Kernels.AttentionTables tables = stageTables(batch, true);
        // Dynamic shared memory: q [group][hd] f32, p [group][tile] f32, the value tile [tile][hd] bf16.
        int smem = group * hd * 4 + group * ATT_TILE * 4 + ATT_TILE * hd * 2;
        parts.kernels().launchAttentionPaged(q, cache, layer, tables, batch.numSequences(), shape, o, partials, rows,
                splits, smem);
        lastKernel = "attention_paged";
        merge(partials, rows, shape, splits, o);
    }

    /** Head sizes the tensor-core kernel is compiled for. */
    private static boolean tensorCoreHeadDim(int headDim) {
        return headDim == 32 || headDim == 64 || headDim == 96 || headDim == 128;
    }

    /** The tensor-core kernel's 16-byte loads and 4-byte stores need these strides and head sizes. */
    private static boolean tensorCoreFits(CudaTensor q, AttentionShape shape, CudaTensor o) {
        return tensorCoreHeadDim(shape.headDim()) && q.cols() % 8 == 0 && o.cols() % 2 == 0;
    }

    /** The most query rows any sequence of the batch has. */
    static int mostQueryRows(AttentionBatch batch) {
        int most = 0;
        int[] queryStarts = batch.queryStarts();
        for (int s = 0; s < batch.numSequences(); s++) {
            most = Math.max(most, queryStarts[s + 1] - queryStarts[s]);
        }
        return most;
    }

    /** Query rows of one tensor-core tile: its 64 matrix rows hold every query head of the KV head for each row. */
    static int tensorCoreRowsPerTile(AttentionShape shape) {
        return ATT_TC_BLOCK_M / (shape.numHeads() / shape.numKvHeads());
    }

    /**
     * Entries of the tensor-core tile table for {@code rows} rows of {@code sequences} sequences: a bound that
     * depends on shapes only (each sequence's last tile may be partial; no tile is empty).
     */
    static int tensorCoreTableLength(int rows, int sequences, int rowsPerTile) {
        return (int) Math.min(rows, ceilDiv(rows, rowsPerTile) + (long) sequences);
    }

    /**
     * The tile table, pairs {sequence, first query row}: each sequence's rows cut into tiles of
     * {@code rowsPerTile}, its last (longest: it sees the most keys) tile first so that long blocks start early;
     * unused entries {-1, 0}.
     */
    static int[] tensorCoreTiles(int[] queryStarts, int sequences, int rowsPerTile, int tableLength) {
        int[] tiles = new int[2 * tableLength];
        int n = 0;
        for (int s = 0; s < sequences; s++) {
            int rows = queryStarts[s + 1] - queryStarts[s];
            for (int t = ceilDiv(rows, rowsPerTile) - 1; t >= 0; t--) {
                tiles[2 * n] = s;
                tiles[2 * n + 1] = queryStarts[s] + t * rowsPerTile;
                n++;
            }
        }
        for (int i = n; i < tableLength; i++) {
            tiles[2 * i] = -1;
        }
        return tiles;
    }

    /**
     * Splits of the tensor-core kernel: enough (tile, KV head) blocks for 2 per SM (its occupancy at head size
     * 128), at most {@link #ATT_MAX_SPLITS}. A prefill of thousands of rows gets one; a chunk of a few dozen rows
     * over a long context is split along the keys.
     */
    int tensorCoreSplits(int tableLength, AttentionShape shape) {
        return Math.clamp(ceilDiv(2L * parts.ctx().multiprocessors, Math.max(1L, (long) tableLength * shape.numKvHeads())),
                1, ATT_MAX_SPLITS);
    }

    /**
     * Prefill and mixed steps on the tensor cores ({@code attention_prefill_tc_h32|64|96|128}): one block of 4 warps
     * per (tile of 64 matrix rows, KV head, split), key/value tiles of {@link KernelConstants#ATT_TC_BLOCK_N} tokens
     * double-buffered in shared memory.
     */
    private void tensorCore(CudaTensor q, CudaKvStorage cache, int layer, AttentionBatch batch, AttentionShape shape,
                            CudaTensor o) {
        int rows = batch.numRows();
        int seqs = batch.numSequences();
        int rowsPerTile = tensorCoreRowsPerTile(shape);
        int tableLength = tensorCoreTableLength(rows, seqs, rowsPerTile);
        int splits = tensorCoreSplits(tableLength, shape);
        long[] partials = partials(rows, shape, splits);
        Kernels.AttentionTables tables = stageTables(batch, true);
        long tiles = parts.ring().ints(tensorCoreTiles(batch.queryStarts(), seqs, rowsPerTile, tableLength));
        // Dynamic shared memory: the Q tile and two stages of key and value tiles, rows padded by 8 bf16.
        int smem = (ATT_TC_BLOCK_M + 4 * ATT_TC_BLOCK_N) * (shape.headDim() + 8) * 2;
        parts.kernels().launchAttentionPrefillTc(q, cache, layer, tables, tiles, shape, o, partials, tableLength,
                splits, smem);
        lastKernel = "attention_prefill_tc_h" + shape.headDim();
        merge(partials, rows, shape, splits, o);
    }

    /**
     * The batch's tables in the staging ring, in this order: query starts (only when the kernel reads them; the
     * decode kernel's rows are its sequences), context lengths, page table starts, page tables.
     */
    private Kernels.AttentionTables stageTables(AttentionBatch batch, boolean queryStarts) {
        StagingRing ring = parts.ring();
        return new Kernels.AttentionTables(queryStarts ? ring.ints(batch.queryStarts()) : 0,
                ring.ints(batch.contextLens()), ring.ints(batch.pageTableStarts()), ring.ints(batch.pageTables()));
    }

    /** Splits of the general kernel: enough (row, KV head) blocks for 4 per SM, at most {@link #ATT_MAX_SPLITS}. */
    private int generalSplits(int rows, AttentionShape shape) {
        if (invariant) {
            return INVARIANT_SPLITS;
        }
        return Math.clamp(ceilDiv(4L * parts.ctx().multiprocessors, Math.max(1L, (long) rows * shape.numKvHeads())), 1,
                ATT_MAX_SPLITS);
    }

    /** (partial acc, partial (m, l)) in the workspace for {@code splits} splits, or zeros for one split. */
    private long[] partials(int rows, AttentionShape shape, int splits) {
        if (splits == 1) {
            return new long[2];
        }
        workspace.ensure(workspaceBytes(rows, shape, splits));
        return new long[] {workspace.ptr, workspace.ptr + (long) rows * shape.numHeads() * splits * shape.headDim() * 4};
    }

    /** Partial results of {@code splits} splits: acc [rows][heads][splits][headDim] then (m, l) per split, float32. */
    private static long workspaceBytes(int rows, AttentionShape shape, int splits) {
        return (long) rows * shape.numHeads() * splits * (shape.headDim() + 2) * 4;
    }

    /**
     * Sizes the workspace for every step of up to {@code maxRows} query rows of {@code shape}, decode or
     * not, so that such steps allocate nothing (a CUDA-graph capture must not allocate).
     */
    void reserveWorkspace(int maxRows, AttentionShape shape) {
        long bytes = 0;
        for (int rows = 1; rows <= maxRows; rows++) {
            int splits = Math.max(decodeSplits(rows, shape), generalSplits(rows, shape));
            if (tensorCoreKernel && tensorCoreHeadDim(shape.headDim())) {
                // The fewest tiles a step of this many rows can have: one sequence.
                int tiles = Math.min(rows, ceilDiv(rows, tensorCoreRowsPerTile(shape)) + 1);
                splits = Math.max(splits, tensorCoreSplits(tiles, shape));
            }
            bytes = Math.max(bytes, workspaceBytes(rows, shape, splits));
        }
        workspace.ensure(bytes);
        if (mergeInDecode && decodeKernel) {
            arrivals.ensure(4 * decodeBlocks(maxRows, shape));
        }
    }

    private void merge(long[] partials, int rows, AttentionShape shape, int splits, CudaTensor o) {
        if (splits > 1) {
            parts.kernels().launchAttentionMerge(partials[0], partials[1], shape.numHeads(), shape.headDim(), splits,
                    o.ptr, o.cols(), rows);
        }
    }

    /**
     * A device buffer sized from shapes only, that only grows. Growing is refused inside a graph capture (a capture
     * must not allocate); the outgrown buffer is kept until {@link #close()}, as work already enqueued, or recorded
     * in a CUDA graph, may still use it.
     */
    private final class GrowingBuffer {
        private final String what;
        private final boolean zeroed;
        long ptr;
        private long bytes;

        GrowingBuffer(String what, boolean zeroed) {
            this.what = what;
            this.zeroed = zeroed;
        }

        /** At least {@code needed} bytes (doubling), zeroed on the stream when the buffer is so made. */
        void ensure(long needed) {
            if (needed <= bytes) {
                return;
            }
            parts.ctx().capture.requireNotCapturing("growing " + what);
            if (ptr != 0) {
                retiredWorkspaces.add(ptr);
            }
            bytes = Shapes.roundUp(Math.max(needed, 2 * bytes), 4);
            ptr = parts.memory().alloc(bytes);
            if (zeroed) {
                parts.ctx().driver.memsetD32Async(ptr, 0, bytes / 4, parts.ctx().stream);
            }
        }
    }

    /** Gives the outgrown workspaces back (the stream has drained). */
    void close() {
        for (long w : retiredWorkspaces) {
            parts.memory().release(w);
        }
        retiredWorkspaces.clear();
    }
}
