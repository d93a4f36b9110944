package ai.punica.backend.cpu;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.RopeTable;
import ai.punica.backend.HostBackend;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pure-Java backend: float32 activations and KV cache in native memory, weights read in their
 * stored dtype straight from the (memory-mapped) checkpoint, every operation cut into pieces that run
 * on a fixed pool of threads. The loops themselves are {@link CpuKernels}: Vector API kernels when
 * {@code jdk.incubator.vector} is present, scalar ones otherwise.
 *
 * <pre>
 *   matmul / SGMV ──► Gemm pieces (split over weight rows, or x rows when there are few outputs) ──► kernels.gemm
 *   attention     ──► (sequence, KV head, ≤16 query rows) pieces ──► scores / expInPlace / weightedSum per page run
 *   row-wise ops  ──► row ranges ──► kernels.*
 * </pre>
 *
 * <p>One thread drives a backend at a time (the engine thread); it is not safe for concurrent callers.
 */
public final class CpuBackend extends HostBackend<CpuTensor, CpuKvStorage> {

    private static final Logger LOG = LoggerFactory.getLogger(CpuBackend.class);
    private static final String VECTOR_MODULE = "jdk.incubator.vector";
    private static final AtomicBoolean MISSING_MODULE_LOGGED = new AtomicBoolean();

    /** Multiply-adds below which work is not worth a task of its own (a few µs of vector code). */
    private static final long MIN_TASK_MACS = 1 << 17;
    /** Elements of a row-wise operation below which it is not worth a task. */
    private static final int MIN_TASK_ELEMENTS = 1 << 15;
    /** Query rows of one sequence per attention task (prefill chunks are cut into such pieces). */
    private static final int ATTENTION_ROWS = 16;

    /**
     * How to build a CPU backend. {@code threads}: worker threads (default: available processors, or
     * {@code -Dpunica.cpu.threads}); {@code vector}: use the Vector API when present (default true, or
     * {@code -Dpunica.cpu.vector=false} to force scalar code).
     */
    public record Options(int threads, boolean vector, boolean batchInvariant) {
        public Options {
            if (threads < 1) {
                throw new IllegalArgumentException("CpuBackend needs at least 1 thread, got " + threads);
            }
        }

        /** Not batch-invariant (the fastest reduction per shape). */
        public Options(int threads, boolean vector) {
            this(threads, vector, false);
        }

        public static Options defaults() {
            int threads = Integer.getInteger("punica.cpu.threads", Runtime.getRuntime().availableProcessors());
            boolean vector = Boolean.parseBoolean(System.getProperty("punica.cpu.vector", "true"));
            return new Options(threads, vector);
        }

        public Options withVector(boolean vector) {
            return new Options(threads, vector, batchInvariant);
        }

        /**
         * With {@code batchInvariant}, every per-row result is computed in an order that depends on neither
         * the other rows of the call nor the split over threads ({@code --batch-invariant}).
         */
        public Options withBatchInvariant(boolean batchInvariant) {
            return new Options(threads, vector, batchInvariant);
        }
    }

    private final CpuKernels kernels;
    /** {@link Options#batchInvariant}: products in a fixed order per (row, output) ({@link Gemm#fixedOrder}). */
    private final boolean batchInvariant;
    private final WorkerPool pool;
    private final Set<Arena> arenas = new HashSet<>();
    /** Attention scores of one (row, head) per worker thread, grown to the longest context seen. */
    private final ThreadLocal<float[]> scoreScratch = ThreadLocal.withInitial(() -> new float[256]);
    /** cos and sin of one row's rotary angles per worker thread. */
    private final ThreadLocal<float[][]> ropeScratch = ThreadLocal.withInitial(() -> new float[2][0]);
    /** Work lists reused across calls: no per-call allocation beyond a few small records. */
    private final List<GemmPiece> gemmPieces = new ArrayList<>();
    private int[] attentionPieces = new int[256];
    /** A norm weight converted to float32 (norm weights are tiny; conversion per call is cheap). */
    private MemorySegment normWeight;
    private Arena normArena;
    private int nextActivation;
    private boolean closed;

    public CpuBackend() {
        this(Options.defaults());
    }

    public CpuBackend(Options options) {
        this.kernels = selectKernels(options.vector(), options.batchInvariant());
        this.batchInvariant = options.batchInvariant();
        this.pool = new WorkerPool(options.threads());
    }

    /** Whether the Vector API module is in the boot layer (needs {@code --add-modules jdk.incubator.vector}). */
    public static boolean vectorModulePresent() {
        return ModuleLayer.boot().findModule(VECTOR_MODULE).isPresent();
    }

    /** The scalar kernels are batch-invariant as they are: one sequential sum over k per (row, output). */
    private static CpuKernels selectKernels(boolean wantVector, boolean batchInvariant) {
        if (!wantVector) {
            return new ScalarKernels();
        }
        if (!vectorModulePresent()) {
            if (MISSING_MODULE_LOGGED.compareAndSet(false, true)) {
                LOG.warn("{} is not available: the CPU backend runs scalar code, several times slower. "
                        + "Pass --add-modules {} to the JVM to use the Vector API.", VECTOR_MODULE, VECTOR_MODULE);
            }
            return new ScalarKernels();
        }
        return VectorKernels.create(batchInvariant);
    }

    @Override
    public String name() {
        return "cpu (" + kernels.describe() + ", " + pool.threads() + " threads)";
    }

    /** Whether this backend runs the Vector API kernels. */
    public boolean vectorized() {
        return kernels instanceof VectorKernels;
    }

    // ---- memory ---------------------------------------------------------------------------------

    @Override
    public Tensor allocate(int rows, int cols) {
        checkOpen("allocate");
        if (rows < 0 || cols < 0) {
            throw new IllegalArgumentException("allocate: [" + rows + ", " + cols + "] has a negative size");
        }
        Arena arena = Arena.ofShared();
        MemorySegment segment = arena.allocate(Math.max(4L, 4L * rows * cols), 64);
        arenas.add(arena);
        CpuTensor.Storage storage = new CpuTensor.Storage(segment, arena, DType.F32, false);
        return new CpuTensor(this, storage, "activation#" + nextActivation++, rows, cols, false);
    }

    /**
     * Aliases a native (memory-mapped) weight without copying. A weight on the Java heap is copied once
     * into native memory, so that the kernels only ever see native segments (mixing both kinds makes
     * C2's profiles polymorphic and the vector loops slow).
     */
    @Override
    public Tensor loadWeight(TensorData weight) {
        checkOpen("loadWeight");
        weight.matrixShape("loadWeight"); // refuses a tensor that is not 1-D or 2-D before anything is copied
        long bytes = weight.elementCount() * weight.dtype().byteSize();
        if (weight.data().byteSize() < bytes) {
            throw new IllegalArgumentException("loadWeight: " + weight + " has only " + weight.data().byteSize()
                    + " bytes, " + bytes + " needed");
        }
        MemorySegment data = weight.data().asSlice(0, bytes);
        if (data.isNative()) {
            return weight(weight, null);
        }
        Arena arena = Arena.ofShared();
        MemorySegment copy = arena.allocate(Math.max(1, bytes), 64).asSlice(0, bytes);
        copy.copyFrom(data);
        arenas.add(arena);
        return weight(new TensorData(weight.name(), weight.dtype(), weight.shape(), copy), arena);
    }

    @Override
    public Tensor concatRows(String name, List<TensorData> parts) {
        checkOpen("concatRows");
        Arena arena = Arena.ofShared();
        try {
            TensorData joined = TensorData.concatRows(name, parts, arena);
            arenas.add(arena);
            return weight(joined, arena);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** A weight tensor over {@code data}'s native segment, owned by {@code arena} (null: aliased, not ours). */
    private CpuTensor weight(TensorData data, Arena arena) {
        int[] shape = data.matrixShape("loadWeight");
        long bytes = data.elementCount() * data.dtype().byteSize();
        CpuTensor.Storage storage = new CpuTensor.Storage(data.data().asSlice(0, bytes), arena, data.dtype(), true);
        return new CpuTensor(this, storage, data.name(), shape[0], shape[1], false);
    }

    @Override
    protected void upload(float[] src, CpuTensor dst) {
        MemorySegment.copy(src, 0, dst.segment(), JAVA_FLOAT, 0, dst.rows() * dst.cols());
    }

    @Override
    protected void download(CpuTensor src, float[] dst) {
        int n = src.rows() * src.cols();
        if (src.dtype() == DType.F32 && !src.isWeight()) {
            MemorySegment.copy(src.segment(), JAVA_FLOAT, 0, dst, 0, n);
        } else {
            for (int i = 0; i < n; i++) {
                dst[i] = CpuTensor.element(src.segment(), src.dtype(), i);
            }
        }
    }

    /** Closes the tensor's arena (a mapped weight has none: the checkpoint owns its memory). */
    @Override
    protected void released(CpuTensor tensor) {
        if (tensor.arena() != null && arenas.remove(tensor.arena())) {
            tensor.arena().close();
        }
    }

    // ---- dense operations -----------------------------------------------------------------------

    /** out[r] = table[tokenIds[r]], converted to float32. */
    @Override
    protected void embedding(CpuTensor t, int[] tokenIds, CpuTensor o) {
        int cols = t.cols();
        forRows(tokenIds.length, cols, (from, to) -> {
            for (int r = from; r < to; r++) {
                kernels.toFloat(t.segment(), t.dtype(), (long) tokenIds[r] * cols, o.segment(), (long) r * cols, cols);
            }
        });
    }

    /** out[r] = x[r] · (1 / sqrt(Σ x[r]² / n + eps)) · weight, float32. */
    @Override
    protected void rmsNorm(CpuTensor x, CpuTensor weight, float eps, CpuTensor out) {
        normRows(x, null, weight, eps, out);
    }

    /**
     * x[r] = x[r] + delta[r], then out[r] = rmsNorm(x[r])·weight, row by row: the norm reads the row while
     * it is still in cache. Same float32 operations as {@link #add} then {@link #rmsNorm}.
     */
    @Override
    public void addRmsNorm(Tensor x, Tensor delta, Tensor weight, float eps, Tensor out) {
        CpuTensor xs = activation("addRmsNorm", "x", x);
        CpuTensor d = activation("addRmsNorm", "delta", delta);
        CpuTensor w = own("addRmsNorm", "weight", weight);
        CpuTensor o = activation("addRmsNorm", "out", out);
        ShapeChecks.checkAdd("addRmsNorm", "delta", x, delta, x);
        ShapeChecks.checkRmsNorm("addRmsNorm", x, weight, out);
        normRows(xs, d, w, eps, o);
    }

    /** out[r] = rmsNorm(x[r])·w for every row, after x[r] += delta[r] when delta is given. */
    private void normRows(CpuTensor xs, CpuTensor delta, CpuTensor w, float eps, CpuTensor o) {
        int n = xs.cols();
        MemorySegment wf = floatNormWeight(w, n);
        forRows(xs.rows(), n, (from, to) -> {
            for (int r = from; r < to; r++) {
                long i = (long) r * n;
                if (delta != null) {
                    kernels.add(xs.segment(), i, delta.segment(), i, xs.segment(), i, n);
                }
                float inv = (float) (1.0 / Math.sqrt(kernels.sumOfSquares(xs.segment(), i, n) / n + eps));
                kernels.scaleMul(xs.segment(), i, inv, wf, 0, o.segment(), i, n);
            }
        });
    }

    @Override
    protected void add(CpuTensor as, CpuTensor bs, CpuTensor os) {
        // Views are row prefixes of row-major storage, so all three are one contiguous run of floats.
        int n = as.rows() * as.cols();
        pool.forRange(n, Math.max(MIN_TASK_ELEMENTS, ceilDiv(n, pool.threads())), (from, to) ->
                kernels.add(as.segment(), from, bs.segment(), from, os.segment(), from, to - from));
    }

    /** out[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[0, o]), float32 accumulation. */
    @Override
    protected void matmul(CpuTensor x, CpuTensor w, CpuTensor bias, CpuTensor out) {
        Gemm g = new Gemm(x.segment(), x.cols(), w.segment(), w.dtype(), w.cols(), out.segment(), 0, out.cols(),
                bias == null ? null : bias.segment(), bias == null ? null : bias.dtype(), 1f, false, batchInvariant);
        List<GemmPiece> pieces = gemmPieces();
        split(g, 0, x.rows(), w.rows(), pieces);
        run(pieces);
    }

    /**
     * x'[i] = x[i]·c − x[i+d/2]·s, x'[i+d/2] = x[i+d/2]·c + x[i]·s with θ = (float) pos · invFreq[i]
     * (float32, as HF), c = cos θ · f, s = sin θ · f; cos and sin once per row, then every head.
     */
    @Override
    protected void rope(CpuTensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        ropeRows(x, positions, rope, numHeads, headDim, null);
    }

    /**
     * Rotates the first numHeads heads of each row (as {@link #rope}); after each row, {@code then} runs on
     * it (when given) while the row is still in cache.
     */
    private void ropeRows(CpuTensor xs, int[] positions, RopeTable rope, int numHeads, int headDim, RowAction then) {
        int half = headDim / 2;
        int cols = xs.cols();
        float factor = rope.attentionFactor();
        forRows(xs.rows(), numHeads * headDim, (from, to) -> {
            float[][] scratch = ropeScratch.get();
            if (scratch[0].length < half) {
                scratch[0] = new float[half];
                scratch[1] = new float[half];
            }
            float[] cos = scratch[0];
            float[] sin = scratch[1];
            for (int r = from; r < to; r++) {
                for (int i = 0; i < half; i++) {
                    float theta = (float) positions[r] * rope.invFreq(i);
                    cos[i] = (float) Math.cos(theta) * factor;
                    sin[i] = (float) Math.sin(theta) * factor;
                }
                for (int h = 0; h < numHeads; h++) {
                    kernels.rotateHalf(xs.segment(), (long) r * cols + (long) h * headDim, cos, sin, half);
                }
                if (then != null) {
                    then.row(r);
                }
            }
        });
    }

    private interface RowAction {
        void row(int r);
    }

    /** out[r, i] = silu(gateUp[r, i]) · gateUp[r, I + i]. */
    @Override
    protected void swiglu(CpuTensor gateUp, CpuTensor out) {
        int inter = gateUp.cols() / 2;
        forRows(gateUp.rows(), gateUp.cols(), (from, to) -> {
            for (int r = from; r < to; r++) {
                long g = 2L * r * inter;
                kernels.swiglu(gateUp.segment(), g, g + inter, out.segment(), (long) r * inter, inter);
            }
        });
    }

    /** out[i] = x[rows[i]], one row copy each. */
    @Override
    protected void gatherRows(CpuTensor x, int[] rows, CpuTensor out) {
        long rowBytes = 4L * x.cols();
        for (int i = 0; i < rows.length; i++) {
            MemorySegment.copy(x.segment(), rows[i] * rowBytes, out.segment(), i * rowBytes, rowBytes);
        }
    }

    // ---- paged KV cache and attention -----------------------------------------------------------

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        checkOpen("allocateKv");
        if (numLayers <= 0 || numPages <= 0 || pageSize <= 0 || numKvHeads <= 0 || headDim <= 0) {
            throw new IllegalArgumentException("allocateKv: " + numLayers + " layers × " + numPages + " pages × "
                    + pageSize + " tokens × " + numKvHeads + " heads × " + headDim + " has an empty dimension");
        }
        long floats = (long) numLayers * numPages * pageSize * numKvHeads * headDim;
        Arena arena = Arena.ofShared();
        MemorySegment keys = arena.allocate(4 * floats, 64);
        MemorySegment values = arena.allocate(4 * floats, 64);
        arenas.add(arena);
        return new CpuKvStorage(numLayers, numPages, pageSize, numKvHeads, headDim, arena, keys, values);
    }

    @Override
    protected void appendKv(CpuKvStorage cache, int layer, CpuTensor qkv, int kCol, int vCol, int[] slotMapping) {
        for (int r = 0; r < qkv.rows(); r++) {
            appendRow(cache, layer, qkv, r, kCol, vCol, slotMapping[r]);
        }
    }

    /** rope then appendKv, row by row: each row's key and value are copied right after it is rotated. */
    @Override
    public void ropeAppendKv(Tensor qkv, int[] positions, RopeTable rope, int numHeads, int numKvHeads, int headDim,
                             KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        CpuKvStorage cache = kv("ropeAppendKv", kv);
        CpuTensor q = activation("ropeAppendKv", "qkv", qkv);
        ShapeChecks.checkRopeAppendKvLayout(numHeads, numKvHeads, headDim, kv, kCol, vCol);
        ShapeChecks.checkRope(qkv, positions, rope, numHeads + numKvHeads, headDim);
        ShapeChecks.checkAppendKv(kv, layer, qkv, kCol, vCol, slotMapping);
        ropeRows(q, positions, rope, numHeads + numKvHeads, headDim,
                r -> appendRow(cache, layer, q, r, kCol, vCol, slotMapping[r]));
    }

    /** cache[layer][slot] = key and value columns of row r of qkv. */
    private static void appendRow(CpuKvStorage cache, int layer, CpuTensor qkv, int r, int kCol, int vCol, int slot) {
        long bytes = 4L * cache.kvCols();
        long dst = 4 * (layer * cache.layerStride() + (long) slot * cache.kvCols());
        long row = (long) r * qkv.cols();
        MemorySegment.copy(qkv.segment(), 4 * (row + kCol), cache.keys(), dst, bytes);
        MemorySegment.copy(qkv.segment(), 4 * (row + vCol), cache.values(), dst, bytes);
    }

    /**
     * Two-pass softmax attention per (query row, head), float32: s_t = scale · q·k_t over the keys the
     * row sees, p_t = e^(s_t − max) / Σ e^(s_u − max), out = Σ_t p_t · v_t. Work is cut into
     * (sequence, KV head, ≤16 rows) pieces so a piece reuses its KV head's keys and values from cache
     * for all the query heads that share it (GQA).
     */
    @Override
    protected void attention(CpuTensor q, CpuKvStorage cache, int layer, AttentionBatch batch, AttentionShape shape,
                             CpuTensor o) {
        int kvHeads = shape.numKvHeads();
        // piece i: sequence, KV head, first row, end row at attentionPieces[4i .. 4i+3]
        int count = 0;
        long macs = 0;
        for (int s = 0; s < batch.numSequences(); s++) {
            int start = batch.queryStarts()[s];
            int end = batch.queryStarts()[s + 1];
            count += kvHeads * ceilDiv(end - start, ATTENTION_ROWS);
            macs += 2L * (end - start) * batch.contextLens()[s] * shape.qCols();
        }
        if (attentionPieces.length < 4 * count) {
            attentionPieces = new int[Math.max(4 * count, 2 * attentionPieces.length)];
        }
        int[] pieces = attentionPieces;
        int n = 0;
        for (int s = 0; s < batch.numSequences(); s++) {
            int end = batch.queryStarts()[s + 1];
            for (int r = batch.queryStarts()[s]; r < end; r += ATTENTION_ROWS) {
                for (int g = 0; g < kvHeads; g++, n++) {
                    pieces[4 * n] = s;
                    pieces[4 * n + 1] = g;
                    pieces[4 * n + 2] = r;
                    pieces[4 * n + 3] = Math.min(end, r + ATTENTION_ROWS);
                }
            }
        }
        long layerBase = layer * cache.layerStride();
        pool.forRange(count, grain(count, macs), (from, to) -> {
            for (int i = from; i < to; i++) {
                attend(cache, layerBase, q, o, batch, shape, pieces[4 * i], pieces[4 * i + 1], pieces[4 * i + 2],
                        pieces[4 * i + 3]);
            }
        });
    }

    private void attend(CpuKvStorage cache, long layerBase, CpuTensor qkv, CpuTensor out, AttentionBatch batch,
                        AttentionShape shape, int s, int kvHead, int rowFrom, int rowTo) {
        int d = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        int kvCols = cache.kvCols();
        int pageSize = batch.pageSize();
        int[] pageTable = batch.pageTables();
        int tableStart = batch.pageTableStarts()[s];
        MemorySegment q = qkv.segment();
        MemorySegment o = out.segment();
        long headBase = layerBase + (long) kvHead * d;
        for (int row = rowFrom; row < rowTo; row++) {
            int p = batch.position(s, row);
            int lo = shape.slidingWindow() > 0 ? Math.max(0, p - shape.slidingWindow() + 1) : 0;
            int count = p - lo + 1;
            // Query heads of this KV head, 4 at a time where possible (keys and values then load once for 4).
            for (int h = kvHead * group; h < (kvHead + 1) * group; ) {
                int heads = (kvHead + 1) * group - h >= 4 ? 4 : 1;
                float[] scores = scoreScratch.get();
                if (scores.length < heads * count) {
                    scores = new float[Math.max(heads * count, 2 * scores.length)];
                    scoreScratch.set(scores);
                }
                long qi = (long) row * qkv.cols() + (long) h * d;
                // s_t = scale · q·k_t, page by page: each run of consecutive slots is one kernel call
                for (int t = lo; t <= p; ) {
                    int offset = t % pageSize;
                    int run = Math.min(pageSize - offset, p + 1 - t);
                    long k = headBase + ((long) pageTable[tableStart + t / pageSize] * pageSize + offset) * kvCols;
                    if (heads == 4) {
                        kernels.scores4(q, qi, cache.keys(), k, kvCols, run, d, shape.scale(), scores, t - lo, count);
                    } else {
                        kernels.scores(q, qi, cache.keys(), k, kvCols, run, d, shape.scale(), scores, t - lo);
                    }
                    t += run;
                }
                // p_t = e^(s_t − max) / Σ_u e^(s_u − max), per head
                for (int b = 0; b < heads; b++) {
                    int base = b * count;
                    float max = Float.NEGATIVE_INFINITY;
                    for (int i = base; i < base + count; i++) {
                        max = Math.max(max, scores[i]);
                    }
                    float inv = 1f / kernels.expInPlace(scores, base, count, max);
                    for (int i = base; i < base + count; i++) {
                        scores[i] *= inv;
                    }
                }
                // out = Σ_t p_t · v_t
                long oi = (long) row * out.cols() + (long) h * d;
                o.asSlice(4 * oi, 4L * d * heads).fill((byte) 0);
                for (int t = lo; t <= p; ) {
                    int offset = t % pageSize;
                    int run = Math.min(pageSize - offset, p + 1 - t);
                    long v = headBase + ((long) pageTable[tableStart + t / pageSize] * pageSize + offset) * kvCols;
                    if (heads == 4) {
                        kernels.weightedSum4(scores, t - lo, count, cache.values(), v, kvCols, run, d, o, oi);
                    } else {
                        kernels.weightedSum(scores, t - lo, cache.values(), v, kvCols, run, d, o, oi);
                    }
                    t += run;
                }
                h += heads;
            }
        }
    }

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    /** v[r, vCol:vCol+rank] = x[r] · Aᵀ per segment with an adapter: one Gemm per segment, all run together. */
    @Override
    protected void sgmvShrink(CpuTensor x, List<LoraSegment<CpuTensor>> segments, CpuTensor v, int vCol) {
        if (v.sharesStorage(x)) {
            throw ShapeChecks.fail("sgmvShrink", "v " + v + " must not share storage with x " + x);
        }
        List<GemmPiece> pieces = gemmPieces();
        for (LoraSegment<CpuTensor> s : segments) {
            CpuTensor a = s.weight();
            Gemm g = new Gemm(x.segment(), x.cols(), a.segment(), a.dtype(), x.cols(), v.segment(), vCol, v.cols(),
                    null, null, 1f, false, batchInvariant);
            split(g, s.from(), s.to(), s.rank(), pieces);
        }
        run(pieces);
    }

    /** y[r, yCol + o] += scale · v[r, vCol:vCol+rank] · B[o]ᵀ per segment with an adapter. */
    @Override
    protected void sgmvExpand(CpuTensor v, int vCol, List<LoraSegment<CpuTensor>> segments, CpuTensor y, int yCol) {
        if (v.sharesStorage(y)) {
            throw ShapeChecks.fail("sgmvExpand", "y " + y + " must not share storage with v " + v);
        }
        List<GemmPiece> pieces = gemmPieces();
        for (LoraSegment<CpuTensor> s : segments) {
            CpuTensor b = s.weight();
            Gemm g = new Gemm(v.segment().asSlice(4L * vCol), v.cols(), b.segment(), b.dtype(), s.rank(), y.segment(),
                    yCol, y.cols(), null, null, s.scale(), true, batchInvariant);
            split(g, s.from(), s.to(), b.rows(), pieces);
        }
        run(pieces);
    }

    // ---- work splitting -------------------------------------------------------------------------

    /** Rows [r0, r1) × outputs [o0, o1) of one Gemm: a unit of work for one thread. */
    private record GemmPiece(Gemm gemm, int r0, int r1, int o0, int o1) {
        long macs() {
            return (long) (r1 - r0) * (o1 - o0) * gemm.k();
        }
    }

    /**
     * Cuts rows [r0, r1) × outputs [0, outs) of g into at most 4 pieces per thread, none smaller than
     * {@link #MIN_TASK_MACS}. Splitting the outputs (weight rows) is preferred: each weight byte is then
     * read by one thread only. With few outputs (LoRA shrink: rank) the rows are split instead.
     */
    private void split(Gemm g, int r0, int r1, int outs, List<GemmPiece> pieces) {
        int rows = r1 - r0;
        if (rows <= 0 || outs <= 0) {
            return;
        }
        long macs = (long) rows * outs * g.k();
        int count = (int) Math.max(1, Math.min(4L * pool.threads(), macs / MIN_TASK_MACS));
        if (count == 1) {
            pieces.add(new GemmPiece(g, r0, r1, 0, outs));
        } else if (outs >= 16 * count || rows < 4 * count) {
            int chunk = roundUp(ceilDiv(outs, count), 4);
            for (int o = 0; o < outs; o += chunk) {
                pieces.add(new GemmPiece(g, r0, r1, o, Math.min(outs, o + chunk)));
            }
        } else {
            int chunk = roundUp(ceilDiv(rows, count), 4);
            for (int r = r0; r < r1; r += chunk) {
                pieces.add(new GemmPiece(g, r, Math.min(r1, r + chunk), 0, outs));
            }
        }
    }

    /** The reusable piece list, emptied (calls come from one thread at a time). */
    private List<GemmPiece> gemmPieces() {
        gemmPieces.clear();
        return gemmPieces;
    }

    private void run(List<GemmPiece> pieces) {
        long macs = 0;
        for (GemmPiece p : pieces) {
            macs += p.macs();
        }
        pool.forRange(pieces.size(), grain(pieces.size(), macs), (from, to) -> {
            for (int i = from; i < to; i++) {
                GemmPiece p = pieces.get(i);
                kernels.gemm(p.gemm(), p.r0(), p.r1(), p.o0(), p.o1());
            }
        });
    }

    /** Items per task so that tasks are few (≤ 4 per thread) and not smaller than MIN_TASK_MACS. */
    private int grain(int items, long macs) {
        int tasks = (int) Math.max(1, Math.min(4L * pool.threads(), macs / MIN_TASK_MACS));
        return Math.max(1, ceilDiv(items, tasks));
    }

    /** Runs a row-wise operation over row ranges, in parallel when the rows hold enough elements. */
    private void forRows(int rows, int cols, WorkerPool.RangeBody body) {
        int grain = Math.max(1, MIN_TASK_ELEMENTS / Math.max(1, cols));
        grain = Math.max(grain, ceilDiv(rows, 4 * pool.threads()));
        pool.forRange(rows, grain, body);
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    private static int roundUp(int a, int multiple) {
        return ceilDiv(a, multiple) * multiple;
    }

    /** The norm weight as float32 native memory: itself when it already is, else converted into scratch. */
    private MemorySegment floatNormWeight(CpuTensor w, int n) {
        if (normWeight == null || normWeight.byteSize() < 4L * n) {
            if (normArena != null) {
                normArena.close();
            }
            normArena = Arena.ofShared();
            normWeight = normArena.allocate(4L * n, 64);
        }
        kernels.toFloat(w.segment(), w.dtype(), 0, normWeight, 0, n);
        return normWeight;
    }

    // ---- argument checks ------------------------------------------------------------------------

    private void checkOpen(String op) {
        if (closed) {
            throw new IllegalStateException(op + ": the CPU backend is closed");
        }
    }

    /** Whether {@link #close} has released every arena (all tensors are then refused as freed). */
    boolean isClosed() {
        return closed;
    }

    @Override
    protected CpuKvStorage kv(String op, KvStorage kv) {
        if (!(kv instanceof CpuKvStorage c) || !arenas.contains(c.arena())) {
            throw ShapeChecks.fail(op, "KV storage " + kv + " was not made by this CPU backend (or it is closed)");
        }
        return c;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        pool.close();
        for (Arena arena : arenas) {
            arena.close();
        }
        arenas.clear();
        if (normArena != null) {
            normArena.close();
        }
    }
}
