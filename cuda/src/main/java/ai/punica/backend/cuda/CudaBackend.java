package ai.punica.backend.cuda;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.DeviceMemory;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.PinnedHostMemory;
import ai.punica.backend.RopeTable;
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The CUDA backend: activations, weights and the paged KV cache in bf16 on one device; float32
 * accumulation everywhere. Dense projections go to cuBLAS, everything else to our kernels
 * ({@code src/main/cuda}). All work is enqueued on one compute stream; {@link #download} waits for it.
 * Not thread-safe: one engine thread drives a backend.
 *
 * <p>This class checks that tensors are its own and hands each operation to the part that does it:
 * <pre>
 *  CudaBackend ─┬─ DeviceAllocator   device blocks, size-keyed free lists, tensor ownership
 *               ├─ StagingRing       pinned host ↔ device ring for uploads, index arrays, results
 *               ├─ TensorTransfers   upload / download / weights;  AsyncWeightLoads: adapters on a copy stream
 *               ├─ PinnedHostBlocks  page-locked host blocks for adapters' host copies (one direct copy each)
 *               ├─ DenseOps          gather, norms, add, GEMM (cuBLAS) + bias, rope, SwiGLU
 *               ├─ PagedAttention    KV cache appends, decode / general attention, split merge
 *               ├─ SgmvOps           LoRA shrink / expand (SlotTables, SgmvTiles), fused decode kernel, tensor cores
 *               ├─ DeviceSampler     sampling next to the logits
 *               └─ StepGraphRecorder step graphs (StepCapture: eager / measure / capture / replay)
 *  every launch: op ─► Kernels (typed, one method per kernel) ─► KernelLauncher (stream, graph, profiler)
 * </pre>
 * Switches: {@link CudaOptions} (docs/gpu.md, "Switches").
 */
public final class CudaBackend implements Backend {
    private static final Logger log = LoggerFactory.getLogger(CudaBackend.class);

    private final CudaOptions options;
    private final CudaContext ctx;
    private final KernelModules modules;
    private final KernelProfiler profiler;
    private final KernelLauncher launcher;
    private final DeviceAllocator memory;
    private final StagingRing ring;
    private final TensorTransfers transfers;
    private final PinnedHostBlocks pinnedHost;
    private final AsyncWeightLoads asyncLoads;
    private final DenseOps dense;
    private final PagedAttention attention;
    private final SgmvOps sgmv;
    private final DeviceSampler sampler;
    private final StepGraphRecorder recorder;

    /** A backend with {@code options} (the device among them). */
    public CudaBackend(CudaOptions options) {
        this.options = options;
        ctx = new CudaContext(options.device());
        modules = new KernelModules(ctx.driver, ctx.ccMajor, ctx.ccMinor, options.nvrtc());
        profiler = options.profile() ? new KernelProfiler(ctx.driver) : null;
        launcher = new KernelLauncher(ctx, modules, profiler, loraApart(options), options.apartGemmSms(),
                options.programmaticLaunch() && ctx.ccMajor >= 9, options.gemmTuning());
        memory = new DeviceAllocator(ctx);
        ring = new StagingRing(ctx);
        DeviceParts parts = new DeviceParts(ctx, memory, ring, new Kernels(launcher, ctx.multiprocessors));
        transfers = new TensorTransfers(parts);
        pinnedHost = new PinnedHostBlocks(ctx);
        asyncLoads = new AsyncWeightLoads(ctx, memory, pinnedHost);
        dense = new DenseOps(parts, options.batchInvariant());
        attention = new PagedAttention(parts, dense, options);
        sgmv = new SgmvOps(parts, options);
        sampler = new DeviceSampler(parts);
        recorder = new StepGraphRecorder(ctx, memory, launcher);
        log.info("CUDA backend on {} (sm_{}{}, {} SMs); kernels: {}", ctx.deviceName, ctx.ccMajor, ctx.ccMinor,
                ctx.multiprocessors, modules.origin());
    }

    /** A backend with the {@code -Dpunica.cuda.*} switches of this JVM ({@link CudaOptions#fromSystemProperties}). */
    public CudaBackend() {
        this(CudaOptions.fromSystemProperties());
    }

    @Override
    public String name() {
        return "cuda";
    }

    /** "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)". */
    public String deviceDescription() {
        return ctx.description();
    }

    /** How each kernel module was loaded: "fatbin" or "nvrtc sm_XY". */
    public Map<String, String> kernelOrigins() {
        return Map.copyOf(modules.origin());
    }

    public CudaOptions options() {
        return options;
    }

    /** Waits for all enqueued work. */
    public void synchronize() {
        ctx.enter();
        ctx.synchronize();
    }

    // ---- memory ---------------------------------------------------------------------------------

    @Override
    public Tensor allocate(int rows, int cols) {
        ctx.enter();
        Shapes.checkShape(rows, cols);
        return memory.newTensor(rows, cols);
    }

    /** float32 logits: the lm_head GEMM writes them in float32 (cuBLAS's fp32 accumulator, not rounded to bf16). */
    @Override
    public Tensor allocateLogits(int rows, int cols) {
        ctx.enter();
        Shapes.checkShape(rows, cols);
        return memory.newF32Tensor(rows, cols);
    }

    @Override
    public Tensor loadWeight(TensorData weight) {
        ctx.enter();
        return reserved(transfers.loadWeight(weight));
    }

    /** A projection weight sizes the batch-invariant GEMM's scratch now, outside any step (see {@link DenseOps}). */
    private CudaTensor reserved(CudaTensor weight) {
        dense.reserveFor(weight.rows(), weight.cols());
        return weight;
    }

    @Override
    public WeightUpload loadWeightsAsync(List<TensorData> weights) {
        ctx.enter();
        return asyncLoads.load(weights);
    }

    @Override
    public Tensor concatRows(String name, List<TensorData> parts) {
        ctx.enter();
        return reserved(transfers.concatRows(name, parts));
    }

    @Override
    public void upload(float[] src, Tensor dst) {
        ctx.enter();
        transfers.upload(src, tensor(dst, "dst"));
    }

    @Override
    public void download(Tensor src, float[] dst) {
        ctx.enter();
        transfers.download(tensor(src, "src"), dst);
    }

    @Override
    public void free(Tensor tensor) {
        ctx.enter();
        memory.free(tensor(tensor, "tensor"));
    }

    /** Page-locked host memory for adapters' host copies, so that their uploads skip the staging buffers. */
    @Override
    public Optional<PinnedHostMemory> pinnedHostMemory() {
        return Optional.of(pinnedHost);
    }

    @Override
    public Optional<DeviceMemory> deviceMemory() {
        ctx.enter();
        long[] info = ctx.driver.memInfo();
        return Optional.of(new DeviceMemory(info[0], info[1]));
    }

    // ---- dense operations -----------------------------------------------------------------------

    @Override
    public void embedding(Tensor table, int[] tokenIds, Tensor out) {
        gather(tensor(table, "table"), tokenIds, tensor(out, "out"), "token id", "the vocabulary");
    }

    @Override
    public void gatherRows(Tensor x, int[] rows, Tensor out) {
        gather(tensor(x, "x"), rows, tensor(out, "out"), "gatherRows: row", "the rows of x");
    }

    /** Embedding lookups and logit-row gathers are the same kernel; {@code what} and {@code range} name them in errors. */
    private void gather(CudaTensor source, int[] indices, CudaTensor out, String what, String range) {
        ctx.enter();
        dense.gather(source, indices, out, what, range);
    }

    @Override
    public void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out) {
        ctx.enter();
        dense.rmsNorm(tensor(x, "x"), tensor(weight, "weight"), eps, tensor(out, "out"));
    }

    @Override
    public void addRmsNorm(Tensor x, Tensor delta, Tensor weight, float eps, Tensor out) {
        addRmsNorm(x, delta, null, weight, eps, out);
    }

    @Override
    public void addRmsNorm(Tensor x, Tensor delta, Tensor lora, Tensor weight, float eps, Tensor out) {
        ctx.enter();
        dense.addRmsNorm(tensor(x, "x"), tensor(delta, "delta"), lora == null ? null : tensor(lora, "lora"),
                tensor(weight, "weight"), eps, tensor(out, "out"));
    }

    /** Zeroes {@code t} on the compute stream (recorded in step graphs as a memset). */
    @Override
    public void zero(Tensor t) {
        ctx.enter();
        CudaTensor ts = tensor(t, "t");
        launcher.memset(ts.ptr, ts.elements() * ts.dtype().byteSize());
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        ctx.enter();
        dense.add(tensor(a, "a"), tensor(b, "b"), tensor(out, "out"));
    }

    @Override
    public void matmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        ctx.enter();
        dense.matmul(tensor(x, "x"), tensor(w, "w"), bias, tensor(out, "out"));
    }

    @Override
    public void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        ctx.enter();
        dense.rope(tensor(x, "x"), positions, rope, numHeads, headDim);
    }

    @Override
    public void swiglu(Tensor gateUp, Tensor out) {
        swiglu(gateUp, null, out);
    }

    @Override
    public void swiglu(Tensor gateUp, Tensor lora, Tensor out) {
        ctx.enter();
        dense.swiglu(tensor(gateUp, "gateUp"), lora == null ? null : tensor(lora, "lora"), tensor(out, "out"));
    }

    // ---- paged KV cache and attention -----------------------------------------------------------

    /** The KV cache is bf16 on the GPU. */
    @Override
    public int kvBytesPerElement() {
        return 2;
    }

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        ctx.enter();
        return attention.allocateKv(numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    @Override
    public void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        ctx.enter();
        CudaKvStorage cache = memory.kv(kv);
        attention.appendKv(cache, layer, tensor(qkv, "qkv"), kCol, vCol, slotMapping);
    }

    @Override
    public void ropeAppendKv(Tensor qkv, int[] positions, RopeTable rope, int numHeads, int numKvHeads, int headDim,
                             KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        ropeAppendKv(qkv, null, positions, rope, numHeads, numKvHeads, headDim, kv, layer, kCol, vCol, slotMapping);
    }

    @Override
    public void ropeAppendKv(Tensor qkv, Tensor lora, int[] positions, RopeTable rope, int numHeads, int numKvHeads,
                             int headDim, KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        ctx.enter();
        CudaKvStorage cache = memory.kv(kv);
        attention.ropeAppendKv(tensor(qkv, "qkv"), lora == null ? null : tensor(lora, "lora"), positions, rope,
                numHeads, numKvHeads, headDim, cache, layer, kCol, vCol, slotMapping);
    }

    @Override
    public void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out) {
        ctx.enter();
        CudaKvStorage cache = memory.kv(kv);
        attention.attention(tensor(qkv, "qkv"), cache, layer, batch, shape, tensor(out, "out"));
    }

    /**
     * Sizes the attention workspace for every step of up to {@code maxRows} query rows of {@code shape}, decode or
     * not, so that such steps allocate nothing (a CUDA-graph capture must not allocate).
     */
    public void reserveAttentionWorkspace(int maxRows, AttentionShape shape) {
        ctx.enter();
        attention.reserveWorkspace(maxRows, shape);
    }

    /** Flash-decoding splits of a decode step of {@code rows} rows (tests, benchmarks). */
    int attentionDecodeSplits(int rows, AttentionShape shape) {
        return attention.decodeSplits(rows, shape);
    }

    /** What each GEMM shape runs with {@link CudaOptions#gemmTuning()} (tests, benchmarks; empty without it). */
    Map<TunedGemms.Shape, String> gemmChoices() {
        return launcher.gemmChoices();
    }

    /** The attention kernel the last {@code attention} call launched (tests, benchmarks). */
    String lastAttentionKernel() {
        return attention.lastKernel();
    }

    /** Splits of the tensor-core attention kernel for a step of {@code rows} rows in {@code sequences} sequences. */
    int attentionTensorCoreSplits(int rows, int sequences, AttentionShape shape) {
        return attention.tensorCoreSplits(PagedAttention.tensorCoreTableLength(rows, sequences,
                PagedAttention.tensorCoreRowsPerTile(shape)), shape);
    }

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol) {
        ctx.enter();
        sgmv.shrink(tensor(x, "x"), weights, segments, tensor(v, "v"), vCol);
    }

    @Override
    public void sgmvShrinkGroup(Tensor x, List<LoraWeights> group, Segments segments, Tensor v) {
        ctx.enter();
        sgmv.shrinkGroup(tensor(x, "x"), group, segments, tensor(v, "v"));
    }

    @Override
    public void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        ctx.enter();
        sgmv.expand(tensor(v, "v"), vCol, weights, segments, tensor(y, "y"), yCol);
    }

    @Override
    public void sgmvExpandGroup(Tensor v, List<LoraWeights> group, Segments segments, Tensor y, int[] yCols) {
        ctx.enter();
        sgmv.expandGroup(tensor(v, "v"), group, segments, tensor(y, "y"), yCols);
    }

    /**
     * The projection and its LoRA add-on. Decode steps of more than {@link CudaOptions#fusedMinTiles} rows on
     * sm_90+ run the GEMM, then the fused cluster kernel ({@link SgmvOps#fusedRows}; {@code fusedLora} off
     * turns it off). Otherwise the shrink overlaps the GEMM: both only read x, so the shrink is launched on a
     * side stream forked from the main one (after everything enqueued so far) while cuBLAS runs the GEMM on
     * the main stream; the main stream then waits for the side stream and runs the expand, which adds into
     * the GEMM's output. The kernels and their order on each buffer are those of the default, so the result
     * is the same bit for bit; the shrink's launch latency and its split-K tail hide behind the GEMM. In a
     * step graph the fork and join become two branches of the graph. {@code loraOverlap} off runs everything
     * on the main stream.
     * <pre>
     *  fused:      x ─► GEMM ─► out ─► sgmv_fused_row_group ─► out
     *  overlapped: x ─┬─(side stream) sgmv_shrink* ─► v ─┐
     *                 └─(main stream) GEMM (+ bias) ─► out ┴─ join ─► sgmv_expand* ─► out
     * </pre>
     */
    @Override
    public void matmulLora(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group, Segments segments,
                           Tensor v, int[] cols) {
        ctx.enter();
        if (sgmv.takesFused(x.rows(), group, segments, v.cols())) {
            matmul(x, w, bias, out);
            sgmv.fusedRows(tensor(x, "x"), group, segments, tensor(v, "v"), tensor(out, "out"), cols);
            return;
        }
        if (!options.loraOverlap()) {
            Backend.super.matmulLora(x, w, bias, out, group, segments, v, cols);
            return;
        }
        try {
            launcher.shrinkOnSide(true);
            if (group.size() == 1) {
                sgmvShrink(x, group.getFirst(), segments, v, 0);
            } else {
                sgmvShrinkGroup(x, group, segments, v);
            }
            launcher.shrinkOnSide(false);
            launcher.toComputeStream();
            matmul(x, w, bias, out);
        } finally {
            launcher.shrinkOnSide(false);
            launcher.joinSide();
        }
        if (group.size() == 1) {
            sgmvExpand(v, 0, group.getFirst(), segments, out, cols[0]);
        } else {
            sgmvExpandGroup(v, group, segments, out, cols);
        }
    }

    /** {@link CudaOptions#loraApart}, unless the overlap is off or the backend is batch-invariant. */
    @Override
    public boolean loraApart() {
        return loraApart(options);
    }

    private static boolean loraApart(CudaOptions options) {
        return options.loraApart() && options.loraOverlap() && !options.batchInvariant();
    }

    /**
     * The projection with its add-on kept apart ({@link #loraApart}): the GEMM (and bias) on a side stream forked
     * from the main one after everything enqueued so far, while the main stream zeroes {@code lora} and runs the
     * add-on into it: the fused cluster kernel for decode steps of more than {@link CudaOptions#fusedMinTiles}
     * rows, else the shrink and the expand (the tensor-core ones for long segments). The main stream then waits
     * for the side stream. Neither branch reads what the other writes (both read x); the consumer
     * ({@code addRmsNorm}, {@code swiglu}, {@code ropeAppendKv} with the add-on) reads out and lora, so the add-on's
     * short kernels run under the GEMM instead of after it, and nothing adds it into out. The index arrays the
     * add-on uploads stay on the main stream, ordered before its kernels, and the GEMM has none.
     * <pre>
     *  x ─┬─(side stream) GEMM (+ bias) ─► out ───────────────────┐
     *     └─(main stream) zero lora ─► sgmv_fused_row_group ─► lora ┴─ join ─► consumer(out, lora)
     * </pre>
     */
    @Override
    public void matmulLoraApart(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group,
                                Segments segments, Tensor v, int[] cols, Tensor lora) {
        ctx.enter();
        if (!loraApart()) {
            Backend.super.matmulLoraApart(x, w, bias, out, group, segments, v, cols, lora);
            return;
        }
        CudaTensor ls = tensor(lora, "lora");
        CudaTensor os = tensor(out, "out");
        Shapes.requireSameShape(os, ls);
        try {
            launcher.forkToSide();
            matmul(x, w, bias, out);
            launcher.toComputeStream();
            zero(lora);
            if (sgmv.takesFused(x.rows(), group, segments, v.cols())) {
                sgmv.fusedRows(tensor(x, "x"), group, segments, tensor(v, "v"), ls, cols);
            } else {
                sgmvAddOn(x, group, segments, v, lora, cols);
            }
        } finally {
            launcher.joinSide();
        }
    }

    /** How many times {@link #matmulLora} took the fused kernel (tests). */
    long fusedLaunches() {
        return sgmv.fusedLaunches();
    }

    /** How many of {@link #fusedLaunches} took clusters of 8 ({@link CudaOptions#wideClusters()}; tests). */
    long fusedWideLaunches() {
        return sgmv.fusedWideLaunches();
    }

    /** The device's SM count (tests). */
    int multiprocessors() {
        return ctx.multiprocessors;
    }

    /** How many SGMV shrinks and expands ran on tensor cores, sgmv_tc.cu (tests, benchmarks). */
    long sgmvTensorCoreLaunches() {
        return sgmv.tensorCoreLaunches();
    }

    /** Inputs per split-K shrink block for {@code tileCount} tiles of {@code vCols} rank columns (tests). */
    int shrinkChunk(int tileCount, int vCols, int in) {
        return sgmv.shrinkChunk(tileCount, vCols, in);
    }

    // ---- sampling -------------------------------------------------------------------------------

    @Override
    public boolean supportsSampling() {
        return true;
    }

    /** sampling.cu's {@code sample_rows}; waits for the stream. */
    @Override
    public List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        ctx.enter();
        CudaTensor l = tensor(logits, "logits");
        ShapeChecks.checkSampling(logits, batch);
        return sampler.sample(l, batch);
    }

    // ---- step graphs, profiling, timing ---------------------------------------------------------

    /** Step graphs, unless turned off ({@link CudaOptions#stepGraphs}). */
    @Override
    public StepRecorder stepRecorder() {
        return options.stepGraphs() ? recorder : null;
    }

    /**
     * Device time per kernel since the last call, as a table, when the backend was started with profiling
     * ({@code -Dpunica.cuda.profile=true}); null otherwise. Waits for the stream.
     */
    @Override
    public String profileReport() {
        ctx.enter();
        return profiler == null ? null : profiler.report();
    }

    /**
     * A CUDA graph of the work that {@code work} enqueues, for replay with {@link CudaGraph#launch()}.
     * Everything {@code work} uploads must already be resident (call it once before capturing, so that
     * its metadata uploads hit the staging cache); a capture cannot wait for the stream.
     */
    public CudaGraph capture(Runnable work) {
        ctx.enter();
        ctx.driver.streamBeginCapture(ctx.stream);
        MemorySegment graph;
        try {
            work.run();
        } finally {
            graph = ctx.driver.streamEndCapture(ctx.stream);
        }
        try {
            return new CudaGraph(ctx.driver.graphInstantiate(graph));
        } finally {
            ctx.driver.graphDestroy(graph);
        }
    }

    /** An instantiated CUDA graph on this backend's stream. */
    public final class CudaGraph implements AutoCloseable {
        private final MemorySegment exec;

        private CudaGraph(MemorySegment exec) {
            this.exec = exec;
        }

        public void launch() {
            ctx.enter();
            ctx.driver.graphLaunch(exec, ctx.stream);
        }

        @Override
        public void close() {
            ctx.driver.graphExecDestroy(exec);
        }
    }

    /** Device time of {@code work} in milliseconds, measured with events on this backend's stream. */
    public float timeMillis(Runnable work) {
        ctx.enter();
        MemorySegment start = ctx.driver.eventCreate();
        MemorySegment end = ctx.driver.eventCreate();
        try {
            ctx.driver.eventRecord(start, ctx.stream);
            work.run();
            ctx.driver.eventRecord(end, ctx.stream);
            ctx.driver.eventSynchronize(end);
            return ctx.driver.eventElapsedMillis(start, end);
        } finally {
            ctx.driver.eventDestroy(start);
            ctx.driver.eventDestroy(end);
        }
    }

    /** The device, its context and compute stream (the NCCL communicator enqueues its collectives there). */
    CudaContext context() {
        return ctx;
    }

    /** True when all work enqueued on the compute stream so far has completed (does not wait). */
    boolean computeStreamIdle() {
        ctx.enter();
        MemorySegment e = ctx.driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        try {
            ctx.driver.eventRecord(e, ctx.stream);
            return ctx.driver.eventQuery(e);
        } finally {
            ctx.driver.eventDestroy(e);
        }
    }

    /** Adapter uploads so far, direct from pinned memory and staged (tests, benchmarks). */
    AsyncWeightLoads.Stats uploadStats() {
        return asyncLoads.stats();
    }

    /** Page-locked blocks for adapters: from the driver, reused, refused, bytes held (tests, benchmarks). */
    PinnedHostMemory.Stats pinnedHostStats() {
        return pinnedHost.stats();
    }

    /** The free lists' bytes and how allocations were served so far (tests). */
    DeviceAllocator.Stats allocatorStats() {
        return memory.stats();
    }

    private CudaTensor tensor(Tensor t, String what) {
        return memory.tensor(t, what);
    }

    @Override
    public void close() {
        if (ctx.closed()) {
            return;
        }
        ctx.enter();
        ctx.synchronize();
        recorder.closeAll();
        ctx.markClosed();
        attention.close();
        asyncLoads.close();
        pinnedHost.close();
        memory.freeEverything();
        sgmv.clear();
        dense.clear();
        if (profiler != null) {
            profiler.close();
        }
        launcher.close();
        ring.close();
        modules.close();
        ctx.release();
    }
}
