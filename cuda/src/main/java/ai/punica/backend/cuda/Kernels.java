package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.KernelConstants.ATT_THREADS;
import static ai.punica.backend.cuda.KernelConstants.DEC_THREADS;
import static ai.punica.backend.cuda.KernelConstants.DIGITS;
import static ai.punica.backend.cuda.KernelConstants.FUSED_CLUSTER;
import static ai.punica.backend.cuda.KernelConstants.FUSED_CLUSTER_WIDE;
import static ai.punica.backend.cuda.KernelConstants.ROW_INTS;
import static ai.punica.backend.cuda.KernelConstants.SAMPLE_THREADS;
import static ai.punica.backend.cuda.KernelConstants.SGMV_THREADS;
import static ai.punica.backend.cuda.KernelConstants.ATT_TC_THREADS;
import static ai.punica.backend.cuda.KernelConstants.TC_THREADS;

import ai.punica.backend.AttentionShape;
import ai.punica.backend.DType;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

/**
 * One launch method per kernel of {@code src/main/cuda}, named after what it computes, taking the kernel's
 * parameters in the kernel's order (device addresses as {@code long}) and its launch shape. The op families
 * decide what to launch; this class is the only place that knows kernel names and argument order.
 */
final class Kernels {
    /** Block size of the elementwise kernels, which loop over their elements grid-stride. */
    static final int ELEMENTWISE_THREADS = 256;
    /** The sampling kernel's shared memory: a column of {@code DIGITS} histogram cells per thread. */
    static final int SAMPLE_SMEM = DIGITS * SAMPLE_THREADS * 4;

    private final KernelLauncher launcher;
    private final int multiprocessors;
    /** Dynamic shared memory attention_paged was allowed beyond the default 48 KB. */
    private int attentionSmemOptIn = 48 * 1024;
    /** Dynamic shared memory each attention_prefill_tc_h* kernel was allowed beyond the default 48 KB. */
    private final Map<String, Integer> tensorCoreSmemOptIn = new HashMap<>();
    /** The sampling kernels whose shared memory has been opted in. */
    private final Set<String> samplingSmemOptIn = new HashSet<>();

    Kernels(KernelLauncher launcher, int multiprocessors) {
        this.launcher = launcher;
        this.multiprocessors = multiprocessors;
    }

    /** Blocks of a grid-stride elementwise launch over {@code n} items: enough for 8 per SM at most. */
    int gridFor(long n) {
        return (int) Math.max(1, Math.min(Shapes.ceilDiv(n, ELEMENTWISE_THREADS), 8L * multiprocessors));
    }

    /** {@code out = x·wᵀ} by cuBLAS (bf16 in and out, float32 accumulation) on the compute stream. */
    /** {@code out = x·wᵀ}, bf16 inputs, fp32 accumulation; out bf16, or float32 where out is (the logits). */
    void launchGemm(CudaTensor x, CudaTensor w, CudaTensor out) {
        launcher.gemm(x.ptr, w.ptr, out.ptr, x.rows(), x.cols(), w.rows(), out.cols(),
                out.dtype() == DType.F32 ? Cublas.CUDA_R_32F : Cublas.CUDA_R_16BF);
    }

    /** {@code bytes} from {@code src} to {@code dst}, device to device, on the compute stream (recorded in step graphs). */
    void launchCopy(long dst, long src, long bytes) {
        launcher.copy(dst, src, bytes);
    }

    /** {@code rows} rows of x (contiguous, {@code w.cols()} wide) times {@code wᵀ} into {@code out} of {@code outType}. */
    void launchGemm(long x, CudaTensor w, long out, int rows, int outType) {
        launcher.gemm(x, w.ptr, out, rows, w.cols(), w.rows(), w.rows(), outType);
    }

    // ---- elementwise.cu, fused.cu ----

    /** bf16 [n] from float32 [n]. */
    void launchF32ToBf16(long src, long dst, long n) {
        convert("f32_to_bf16", src, dst, n);
    }

    /** bf16 [n] from IEEE half [n]. */
    void launchF16ToBf16(long src, long dst, long n) {
        convert("f16_to_bf16", src, dst, n);
    }

    /** float32 [n] from bf16 [n]. */
    void launchBf16ToF32(long src, long dst, long n) {
        convert("bf16_to_f32", src, dst, n);
    }

    private void convert(String kernel, long src, long dst, long n) {
        if (n > 0) {
            launcher.args().p(src).p(dst).l(n).launch(kernel, gridFor(n), 1, 1, ELEMENTWISE_THREADS);
        }
    }

    /** {@code out[i] = src[index[i]]}, rows of {@code cols}; a block per output row. */
    void launchGatherRows(long src, long index, long out, int cols, int rows) {
        launcher.args().p(src).p(index).p(out).i(cols).launch("gather_rows", rows, 1, 1, ELEMENTWISE_THREADS);
    }

    /** {@code out = x / rms(x) · w} per row; a block of {@code threads} per row. */
    void launchRmsNorm(long x, long w, long out, int cols, float eps, int rows, int threads) {
        launcher.args().p(x).p(w).p(out).i(cols).f(eps).launch("rms_norm", rows, 1, 1, threads);
    }

    /** {@code x += delta; out = x / rms(x) · w} per row, the row read once; a block of {@code threads} per row. */
    void launchAddRmsNorm(long x, long delta, long lora, long w, long out, int cols, float eps, int rows, int threads) {
        launcher.args().p(x).p(delta).p(lora).p(w).p(out).i(cols).f(eps).launch("add_rms_norm", rows, 1, 1, threads);
    }

    /** {@code out = a + b} over {@code n} elements (8 at a time when n allows). */
    void launchAdd(long a, long b, long out, long n) {
        launcher.args().p(a).p(b).p(out).l(n).launch("add", gridFor(n % 8 == 0 ? n / 8 : n), 1, 1, ELEMENTWISE_THREADS);
    }

    /** {@code out[r] += bias} for every row of {@code [rows, cols]}. */
    void launchAddBias(long out, long bias, int rows, int cols) {
        launcher.args().p(out).p(bias).i(rows).i(cols).launch("add_bias", gridFor((long) rows * cols), 1, 1,
                ELEMENTWISE_THREADS);
    }

    /** {@code out = silu(gate) · up} from the fused {@code gate|up [rows, 2·inter]}. */
    void launchSwiglu(long gateUp, long out, int rows, int inter, long lora) {
        launcher.args().p(gateUp).p(out).i(rows).i(inter).p(lora).launch("swiglu", gridFor((long) rows * inter), 1, 1,
                ELEMENTWISE_THREADS);
    }

    /** Rotary embedding of {@code heads} heads of each row at its position; a block per row. */
    void launchRope(long x, int rowStride, long positions, long invFreq, int heads, int headDim, float factor,
                    int rows, int threads) {
        launcher.args().p(x).i(rowStride).p(positions).p(invFreq).i(heads).i(headDim).f(factor)
                .launch("rope", rows, 1, 1, threads);
    }

    /** Copies each row's K and V columns to its cache slot; a block per row. */
    void launchAppendKv(long qkv, int qkvStride, int kCol, int vCol, long slots, long kCache, long vCache, int kvCols,
                        int rows, int threads) {
        launcher.args().p(qkv).i(qkvStride).i(kCol).i(vCol).p(slots).p(kCache).p(vCache).i(kvCols)
                .launch("append_kv", rows, 1, 1, threads);
    }

    /** Rope on the query and key heads, the rotated keys and the values written to the cache; a block per row. */
    void launchRopeAppendKv(long qkv, int qkvStride, long positions, long invFreq, int numHeads, int numKvHeads,
                            int headDim, float factor, int vCol, long slots, long kCache, long vCache, long lora,
                            int rows, int threads) {
        launcher.args().p(qkv).i(qkvStride).p(positions).p(invFreq).i(numHeads).i(numKvHeads).i(headDim).f(factor)
                .i(vCol).p(slots).p(kCache).p(vCache).p(lora);
        // Dynamic shared memory: cos/sin of the row's angles, headDim floats.
        launcher.launch(launcher.function("rope_append_kv"), "rope_append_kv", rows, 1, 1, threads, headDim * 4);
    }

    // ---- attention.cu ----

    /**
     * Decode attention, {@code attention_decode_l<lanes>_g<headsPerPass>}: grid ({@code blocks} = rows × KV
     * heads × passes, splits), {@link KernelConstants#DEC_THREADS} threads.
     */
    void launchAttentionDecode(int lanes, int headsPerPass, CudaTensor q, CudaKvStorage cache, int layer,
                               AttentionTables tables, AttentionShape shape, CudaTensor out, long[] partials,
                               long arrivals, int blocks, int splits) {
        launcher.args().p(q.ptr).i(q.cols()).p(cache.keys(layer)).p(cache.values(layer)).p(tables.contextLens())
                .p(tables.pageTableStarts()).p(tables.pageTables()).i(cache.pageSize()).i(cache.pageShift())
                .i(shape.numHeads()).i(shape.numKvHeads()).i(shape.headDim()).f(shape.scale()).i(shape.slidingWindow())
                .p(out.ptr).i(out.cols()).p(partials[0]).p(partials[1]).p(arrivals)
                .launch("attention_decode_l" + lanes + "_g" + headsPerPass, blocks, splits, 1, DEC_THREADS);
    }

    /** Attention of any mix of prefill and decode rows ({@code attention_paged}): grid (rows, KV heads, splits). */
    void launchAttentionPaged(CudaTensor q, CudaKvStorage cache, int layer, AttentionTables tables, int sequences,
                              AttentionShape shape, CudaTensor out, long[] partials, int rows, int splits, int smem) {
        launcher.args().p(q.ptr).i(q.cols()).p(cache.keys(layer)).p(cache.values(layer)).p(tables.queryStarts())
                .p(tables.contextLens()).p(tables.pageTableStarts()).p(tables.pageTables()).i(sequences)
                .i(cache.pageSize()).i(shape.numHeads()).i(shape.numKvHeads()).i(shape.headDim()).f(shape.scale())
                .i(shape.slidingWindow()).p(out.ptr).i(out.cols()).p(partials[0]).p(partials[1]);
        MemorySegment kernel = launcher.function("attention_paged");
        if (smem > attentionSmemOptIn) {
            launcher.allowSharedMemory(kernel, smem);
            attentionSmemOptIn = smem;
        }
        launcher.launch(kernel, "attention_paged", rows, shape.numKvHeads(), splits, ATT_THREADS, smem);
    }

    /** The index arrays of an attention batch on the device (queryStarts is 0 where the kernel does not read it). */
    record AttentionTables(long queryStarts, long contextLens, long pageTableStarts, long pageTables) {
    }

    /** Combines the splits' partial (m, l, acc) of every (row, head) into out: grid (rows, heads). */
    void launchAttentionMerge(long partAcc, long partMl, int numHeads, int headDim, int splits, long out,
                              int outStride, int rows) {
        launcher.args().p(partAcc).p(partMl).i(numHeads).i(headDim).i(splits).p(out).i(outStride)
                .launch("attention_merge", rows, numHeads, 1, Math.min(256, Shapes.roundUp(headDim, 32)));
    }

    // ---- attention_tc.cu ----

    /**
     * Prefill / mixed-step attention on the tensor cores ({@code attention_prefill_tc_h<headDim>}, attention_tc.cu):
     * grid (tile-table entries, KV heads, splits), {@link KernelConstants#ATT_TC_THREADS} threads, {@code smem} bytes
     * of dynamic shared memory (the Q tile and two stages of key and value tiles).
     */
    void launchAttentionPrefillTc(CudaTensor q, CudaKvStorage cache, int layer, AttentionTables tables, long tiles,
                                  AttentionShape shape, CudaTensor out, long[] partials, int tileCount, int splits,
                                  int smem) {
        launcher.args().p(q.ptr).i(q.cols()).p(cache.keys(layer)).p(cache.values(layer)).p(tables.queryStarts())
                .p(tables.contextLens()).p(tables.pageTableStarts()).p(tables.pageTables()).p(tiles)
                .i(cache.pageSize()).i(cache.pageShift()).i(shape.numHeads()).i(shape.numKvHeads()).f(shape.scale())
                .i(shape.slidingWindow()).p(out.ptr).i(out.cols()).p(partials[0]).p(partials[1]);
        String name = "attention_prefill_tc_h" + shape.headDim();
        MemorySegment kernel = launcher.function(name);
        if (smem > tensorCoreSmemOptIn.getOrDefault(name, 48 * 1024)) {
            launcher.allowSharedMemory(kernel, smem);
            tensorCoreSmemOptIn.put(name, smem);
        }
        launcher.launch(kernel, name, tileCount, shape.numKvHeads(), splits, ATT_TC_THREADS, smem);
    }

    // ---- sgmv.cu ----

    /**
     * {@code v[r, 0:rank] = x[r]·Aᵀ} for each tile's slot, grid (tiles, rank blocks, splits);
     * {@code sgmv_shrink_row} for one-row tiles. Inside {@code matmulLora} the shrinks go to the side stream.
     */
    void launchSgmvShrink(boolean rowTiles, long x, int xStride, long v, int vStride, long tiles, long aPtr,
                          long ranks, int in, int kChunk, long partial, long arrivals, int tileCount, int rankBlocks,
                          int splits) {
        launcher.forkIfAsked();
        launcher.args().p(x).i(xStride).p(v).i(vStride).p(tiles).p(aPtr).p(ranks).i(in).i(kChunk).p(partial)
                .p(arrivals).launch(rowTiles ? "sgmv_shrink_row" : "sgmv_shrink", tileCount, rankBlocks, splits,
                        SGMV_THREADS);
    }

    /** The shrink of up to three projections that read x: grid (tiles, rank blocks, splits × projections). */
    void launchSgmvShrinkGroup(boolean rowTiles, long x, int xStride, long v, int vStride, int vWidth, long tiles,
                               long[] tables, int slots, int in, int kChunk, int splits, long partial, long arrivals,
                               int tileCount, int rankBlocks, int projections) {
        launcher.forkIfAsked();
        launcher.args().p(x).i(xStride).p(v).i(vStride).i(vWidth).p(tiles).p(tables[0]).p(tables[1]).p(tables[2])
                .i(slots).i(in).i(kChunk).i(splits).p(partial).p(arrivals)
                .launch(rowTiles ? "sgmv_shrink_group_row" : "sgmv_shrink_group", tileCount, rankBlocks,
                        splits * projections, SGMV_THREADS);
    }

    /** {@code y[r, yCol:yCol+out] += scale·v[r]·Bᵀ} for each tile's slot: grid (tiles, output blocks). */
    void launchSgmvExpand(long v, int vStride, long y, int yStride, int yCol, long tiles, long bPtr, long ranks,
                          long scales, int outFeatures, int tileCount, int outBlocks) {
        launcher.args().p(v).i(vStride).p(y).i(yStride).i(yCol).p(tiles).p(bPtr).p(ranks).p(scales).i(outFeatures)
                .launch("sgmv_expand", tileCount, outBlocks, 1, SGMV_THREADS);
    }

    /** The expand of up to three projections into one output row: grid (tiles, Σ output blocks). */
    void launchSgmvExpandGroup(long v, int vStride, int vWidth, long y, int yStride, long tiles, long[] tables,
                               int slots, int[] yCols, int[] outs, int[] starts, int tileCount, int outBlocks) {
        launcher.args().p(v).i(vStride).i(vWidth).p(y).i(yStride).p(tiles).p(tables[0]).p(tables[1]).p(tables[2])
                .i(slots).i(yCols[0]).i(yCols[1]).i(yCols[2]).i(outs[0]).i(outs[1]).i(outs[2]).i(starts[1])
                .i(starts[2]).launch("sgmv_expand_group", tileCount, outBlocks, 1, SGMV_THREADS);
    }

    /**
     * Shrink and expand of one-row tiles in one launch, a cluster per (row, projection): grid (FUSED_CLUSTER, tiles,
     * n), or with {@code wide} ({@code sgmv_fused_row_group_wide}) clusters of FUSED_CLUSTER_WIDE.
     */
    void launchSgmvFusedRowGroup(long x, int xStride, long y, int yStride, long tiles, long[] tables, int slots,
                                 int in, int[] yCols, int[] outs, int tileCount, int projections, boolean wide) {
        launcher.args().p(x).i(xStride).p(y).i(yStride).p(tiles).p(tables[0]).p(tables[1]).p(tables[2]).i(slots)
                .i(in).i(yCols[0]).i(yCols[1]).i(yCols[2]).i(outs[0]).i(outs[1]).i(outs[2])
                .launch(wide ? "sgmv_fused_row_group_wide" : "sgmv_fused_row_group",
                        wide ? FUSED_CLUSTER_WIDE : FUSED_CLUSTER, tileCount, projections, SGMV_THREADS);
    }

    // ---- sgmv_tc.cu ----

    /**
     * The tensor-core shrink of up to three projections that read x, {@code sgmv_tc_shrink}: grid (tiles of 64
     * rows, splits, projections), {@link KernelConstants#TC_THREADS} threads. Inside {@code matmulLora} it goes to
     * the side stream.
     */
    void launchSgmvTcShrink(long x, int xStride, long v, int vStride, int vWidth, long tiles, long[] tables, int slots,
                            int in, int kChunk, long partial, long arrivals, int tileCount, int splits,
                            int projections) {
        launcher.forkIfAsked();
        launcher.args().p(x).i(xStride).p(v).i(vStride).i(vWidth).p(tiles).p(tables[0]).p(tables[1]).p(tables[2])
                .i(slots).i(in).i(kChunk).p(partial).p(arrivals)
                .launch("sgmv_tc_shrink", tileCount, splits, projections, TC_THREADS);
    }

    /** The tensor-core expand of up to three projections, {@code sgmv_tc_expand}: grid (tiles, Σ output blocks of 128). */
    void launchSgmvTcExpand(long v, int vStride, int vWidth, long y, int yStride, long tiles, long[] tables, int slots,
                            int[] yCols, int[] outs, int[] starts, int tileCount, int outBlocks) {
        launcher.args().p(v).i(vStride).i(vWidth).p(y).i(yStride).p(tiles).p(tables[0]).p(tables[1]).p(tables[2])
                .i(slots).i(yCols[0]).i(yCols[1]).i(yCols[2]).i(outs[0]).i(outs[1]).i(outs[2]).i(starts[1])
                .i(starts[2]).launch("sgmv_tc_expand", tileCount, outBlocks, 1, TC_THREADS);
    }

    // ---- sampling.cu ----

    /**
     * One token (and the log-probabilities asked for) per logit row; a block of 1024 per row. {@code sample_rows}
     * reads float32 logits (the model's), {@code sample_rows_bf16} bf16 ones.
     */
    void launchSampleRows(CudaTensor logits, long params, long scratch, long out) {
        String name = logits.dtype() == DType.F32 ? "sample_rows" : "sample_rows_bf16";
        MemorySegment kernel = launcher.function(name);
        if (samplingSmemOptIn.add(name)) {
            launcher.allowSharedMemory(kernel, SAMPLE_SMEM);
        }
        int rows = logits.rows();
        // The penalty pairs follow the rows' parameters in the same upload.
        launcher.args().p(logits.ptr).i(logits.cols()).p(params).p(params + 4L * rows * ROW_INTS).p(scratch).p(out);
        launcher.launch(kernel, name, rows, 1, 1, SAMPLE_THREADS, SAMPLE_SMEM);
    }
}
