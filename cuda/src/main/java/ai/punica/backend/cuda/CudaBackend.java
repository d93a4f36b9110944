package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import ai.punica.model.TensorData;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The CUDA backend: activations, weights and the paged KV cache in bf16 on one device; float32
 * accumulation everywhere. Dense projections of more than {@value #SKINNY_MAX_ROWS} rows go to cuBLAS, smaller
 * ones (decode steps) and everything else to our kernels ({@code src/main/cuda}). All work is enqueued on one
 * stream; {@link #download} waits for it.
 *
 * <pre>
 *  host int[] / float[] ─► pinned staging ring ─(H→D, async)─► device ring ─► kernels
 *  weights (bf16/f16/f32 safetensors) ─► ring ─► [convert kernel] ─► bf16 device tensors
 *  LoRA slot tables (A/B addresses, rank, scale per slot) ─► one small device table per (layer, projection)
 * </pre>
 *
 * Per-step metadata (token ids, positions, slot mappings, SGMV tiles, attention row tables) goes through
 * the staging ring; an array equal to one uploaded recently in the same ring pass is not uploaded again,
 * so the 32 layers of a step share one copy. The ring is reused after a stream synchronisation.
 * Not thread-safe: one engine thread drives a backend.
 *
 * <p>Step graphs ({@link #stepRecorder()}): a step is run eagerly, then captured into a CUDA graph whose
 * kernels read their index arrays from a buffer of the graph's own; a later step with the same key runs
 * its host code in replay mode, where every launch is compared with the recorded one (kernel, grid,
 * arguments) and every index array is written into the graph's pinned host buffer; one copy of that
 * buffer and one graph launch then do the whole step.
 * <pre>
 *  step host code ─ ints(a) ─► graph host buffer ─(one H→D copy)─► graph device buffer ◄─ recorded kernels
 *                 ─ launch  ─► checked against the recording (a difference: run eagerly, record again)
 * </pre>
 */
public final class CudaBackend implements Backend {
    private static final Logger log = LoggerFactory.getLogger(CudaBackend.class);

    private static final long RING_BYTES = 64L << 20;
    private static final long CUBLAS_WORKSPACE_BYTES = 32L << 20;
    private static final int THREADS = 256;
    private static final int SGMV_TILE_ROWS = 8;
    private static final int SHRINK_RANKS_PER_BLOCK = 32;
    private static final int EXPAND_MAX_RANK = 256;
    private static final int ATT_TILE = 128;
    private static final int ATT_MAX_GROUP = 16;
    private static final int ATT_MAX_HEAD_DIM = 256;
    /** Rows up to which matmul runs the skinny kernel of gemm.cu; more rows go to cuBLAS. */
    static final int SKINNY_MAX_ROWS = 64;
    private static final int SKINNY_TILE_N = 128;
    private static final int SKINNY_STEP_K = 32;
    private static final int SKINNY_CHUNK_K = 128;
    private static final int SKINNY_MAX_STAGES = 4;
    private static final int SKINNY_THREADS = 256;
    private static final int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;

    private final Driver driver;
    private final int device;
    private final MemorySegment context;
    private final MemorySegment stream;
    private final KernelModules kernels;
    private final Cublas cublas;
    private final long cublasWorkspace;
    private final int multiprocessors;
    private final String deviceName;
    private final int ccMajor;
    private final int ccMinor;
    private Thread boundThread;

    private final Arena arena = Arena.ofShared();
    private final MemorySegment launchValues;
    private final MemorySegment launchPointers;
    private int argCount;

    private final MemorySegment ringHost;
    private final long ringDevice;
    private long ringOffset;
    private int ringEpoch;

    private record IntUpload(int[] values, int epoch, long device) {
    }

    private final ArrayDeque<IntUpload> recentUploads = new ArrayDeque<>();

    /** A slot table on the device: aPtr[slots] | bPtr[slots] | rank[slots] | scale[slots]. */
    private static final class SlotTable {
        final long device;
        long[] a;
        long[] b;
        int[] rank;
        float[] scale;

        SlotTable(long device) {
            this.device = device;
        }
    }

    private final Map<LoraWeights, SlotTable> slotTables = new IdentityHashMap<>();
    private final Map<RopeTable, Long> ropeTables = new IdentityHashMap<>();
    private long attentionWorkspace;
    /** Dynamic shared memory the attention kernel was allowed beyond the default 48 KB. */
    private int attentionSmemOptIn = 48 * 1024;
    private long attentionWorkspaceBytes;
    /** Skinny GEMM (gemm.cu): on unless a benchmark turns it off; per-tile arrival counters (zero between launches) and partials. */
    private boolean skinnyGemmEnabled = true;
    private long skinnyCounters;
    private int skinnyCounterCount;
    private long skinnyPartials;
    private long skinnyPartialBytes;
    private int sharedPerBlockOptIn;
    private final Set<String> skinnySmemRaised = new HashSet<>();
    private final Set<Long> liveAllocations = new HashSet<>();
    // ---- step graphs (see the class comment) ----
    private enum Mode { EAGER, MEASURE, CAPTURE, REPLAY }

    /** Most step graphs kept; the least recently used one goes when a new one would exceed this. */
    private static final int MAX_STEP_GRAPHS = 64;

    /** Signals that a step cannot be recorded or replayed as it is; the step then runs eagerly. */
    private static final class GraphMismatch extends RuntimeException {
        GraphMismatch(String message) {
            super(message, null, false, false);
        }
    }

    /** A launch as recorded: kernel, grid, block, shared memory and the argument words. */
    private record LaunchRecord(long function, int gx, int gy, int gz, int threads, int smem, long[] args) {
        boolean sameAs(LaunchRecord o) {
            return function == o.function && gx == o.gx && gy == o.gy && gz == o.gz && threads == o.threads
                    && smem == o.smem && Arrays.equals(args, o.args);
        }

        @Override
        public String toString() {
            return "launch 0x" + Long.toHexString(function) + " grid " + gx + "x" + gy + "x" + gz + " args "
                    + Arrays.toString(args);
        }
    }

    private final class StepGraph {
        final MemorySegment host;
        final long device;
        final long capacity;
        long used;
        final List<Long> slotOffsets = new ArrayList<>();
        final List<Integer> slotLengths = new ArrayList<>();
        final List<LaunchRecord> launches = new ArrayList<>();
        final MemorySegment uploaded = driver.eventCreate();
        MemorySegment exec;

        StepGraph(long capacity) {
            this.capacity = capacity;
            host = driver.memAllocHost(capacity);
            device = alloc(capacity);
        }

        void close() {
            if (exec != null) {
                driver.graphExecDestroy(exec);
            }
            driver.eventDestroy(uploaded);
            driver.memFreeHost(host);
            release(device);
        }
    }

    private Mode mode = Mode.EAGER;
    private boolean stepGraphsEnabled = !"false".equals(System.getProperty("punica.cuda.graphs"));
    private final LinkedHashMap<Object, StepGraph> stepGraphs = new LinkedHashMap<>(16, 0.75f, true);
    private final Set<Object> unrecordable = new HashSet<>();
    /** Keys whose replay failed and that were recorded again, with how often: a key that keeps changing stops being recorded. */
    private final Map<Object, Integer> rerecorded = new HashMap<>();
    private static final int MAX_RERECORDS = 3;
    /** Index arrays of the step being measured, recorded or replayed, by identity → device address. */
    private final Map<int[], Long> stepUploads = new IdentityHashMap<>();
    private StepGraph currentGraph;
    private int slotCursor;
    private int launchCursor;
    private long measuredBytes;
    private long replayCount;
    private long recordCount;

    /** Per-kernel device times, when -Dpunica.cuda.profile=true; else null. */
    private final KernelProfiler profiler;
    private boolean closed;

    /** A backend on device {@code ordinal} (0 for the first GPU). */
    public CudaBackend(int ordinal) {
        driver = Driver.get();
        int count = driver.deviceCount();
        if (ordinal < 0 || ordinal >= count) {
            throw new IllegalArgumentException("CUDA device " + ordinal + " does not exist; this machine has " + count);
        }
        device = driver.device(ordinal);
        context = driver.primaryContextRetain(device);
        driver.setCurrent(context);
        boundThread = Thread.currentThread();
        multiprocessors = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        ccMajor = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        ccMinor = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        deviceName = driver.deviceName(device);
        if (ccMajor < 8) {
            throw new CudaException(deviceName + " has compute capability " + ccMajor + "." + ccMinor
                    + "; the CUDA backend needs 8.0 or newer (bf16)");
        }
        stream = driver.streamCreate(Driver.CU_STREAM_NON_BLOCKING);
        kernels = new KernelModules(driver, ccMajor, ccMinor);
        cublasWorkspace = driver.memAlloc(CUBLAS_WORKSPACE_BYTES);
        cublas = new Cublas(stream, cublasWorkspace, CUBLAS_WORKSPACE_BYTES);
        ringHost = driver.memAllocHost(RING_BYTES);
        ringDevice = driver.memAlloc(RING_BYTES);
        launchValues = arena.allocate(8L * 64, 16);
        launchPointers = arena.allocate(ADDRESS, 64);
        for (int i = 0; i < 64; i++) {
            launchPointers.setAtIndex(ADDRESS, i, launchValues.asSlice(8L * i, 8));
        }
        profiler = Boolean.getBoolean("punica.cuda.profile") ? new KernelProfiler(driver, stream) : null;
        log.info("CUDA backend on {} (sm_{}{}, {} SMs); kernels: {}", deviceName, ccMajor, ccMinor, multiprocessors,
                kernels.origin());
    }

    public CudaBackend() {
        this(0);
    }

    @Override
    public String name() {
        return "cuda";
    }

    /** "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)". */
    public String deviceDescription() {
        return deviceName + " (sm_" + ccMajor + ccMinor + ", " + multiprocessors + " SMs)";
    }

    /** How each kernel module was loaded: "fatbin" or "nvrtc sm_XY". */
    public Map<String, String> kernelOrigins() {
        return Map.copyOf(kernels.origin());
    }

    /** Waits for all enqueued work. */
    public void synchronize() {
        enter();
        driver.streamSynchronize(stream);
    }

    // ---- memory ---------------------------------------------------------------------------------

    @Override
    public Tensor allocate(int rows, int cols) {
        enter();
        checkShape(rows, cols);
        return new CudaTensor(this, alloc((long) rows * cols * 2), rows, cols, DType.BF16, null);
    }

    @Override
    public Tensor loadWeight(TensorData weight) {
        enter();
        int[] shape = weight.matrixShape("loadWeight");
        int rows = shape[0];
        int cols = shape[1];
        checkShape(rows, cols);
        CudaTensor t = new CudaTensor(this, alloc((long) rows * cols * 2), rows, cols, DType.BF16, null);
        uploadWeightData(weight, t.ptr);
        return t;
    }

    @Override
    public Tensor concatRows(String name, List<TensorData> parts) {
        enter();
        if (parts.isEmpty()) {
            throw new IllegalArgumentException(name + ": nothing to concatenate");
        }
        boolean vectors = parts.getFirst().rank() == 1;
        long rows = 0;
        long cols = vectors ? 0 : parts.getFirst().dim(1);
        for (TensorData p : parts) {
            if (vectors ? p.rank() != 1 : p.rank() != 2 || p.dim(1) != cols) {
                throw new IllegalArgumentException(name + ": cannot stack " + p + " with " + parts.getFirst());
            }
            if (vectors) {
                cols += p.dim(0);
            } else {
                rows += p.dim(0);
            }
        }
        if (vectors) {
            rows = 1;
        }
        checkShape(Math.toIntExact(rows), Math.toIntExact(cols));
        CudaTensor t = new CudaTensor(this, alloc(rows * cols * 2), (int) rows, (int) cols, DType.BF16, null);
        long offset = t.ptr;
        for (TensorData p : parts) {
            uploadWeightData(p, offset);
            offset += p.elementCount() * 2;
        }
        return t;
    }

    @Override
    public void upload(float[] src, Tensor dst) {
        enter();
        CudaTensor d = tensor(dst, "dst");
        long n = d.elements();
        if (src.length < n) {
            throw new IllegalArgumentException("upload of " + src.length + " floats into " + d);
        }
        long chunk = RING_BYTES / 4 / 4;
        for (long e = 0; e < n; e += chunk) {
            int count = (int) Math.min(chunk, n - e);
            long off = ringAlloc(count * 4L);
            MemorySegment.copy(src, (int) e, ringHost, JAVA_FLOAT, off, count);
            driver.copyHtoDAsync(ringDevice + off, ringHost.asSlice(off), count * 4L, stream);
            convert("f32_to_bf16", ringDevice + off, d.ptr + e * 2, count);
        }
    }

    @Override
    public void download(Tensor src, float[] dst) {
        enter();
        CudaTensor s = tensor(src, "src");
        long n = s.elements();
        if (dst.length < n) {
            throw new IllegalArgumentException("download of " + s + " into " + dst.length + " floats");
        }
        long chunk = RING_BYTES / 4 / 4;
        for (long e = 0; e < n; e += chunk) {
            int count = (int) Math.min(chunk, n - e);
            long off = ringAlloc(count * 4L);
            convert("bf16_to_f32", s.ptr + e * 2, ringDevice + off, count);
            driver.copyDtoHAsync(ringHost.asSlice(off), ringDevice + off, count * 4L, stream);
            driver.streamSynchronize(stream);
            MemorySegment.copy(ringHost, JAVA_FLOAT, off, dst, (int) e, count);
        }
    }

    @Override
    public void free(Tensor tensor) {
        enter();
        CudaTensor t = tensor(tensor, "tensor");
        if (t.root != t) {
            throw new IllegalArgumentException(t + " is a view (firstRows); free the tensor it came from");
        }
        if (t.freed) {
            throw new IllegalStateException(t + " was already freed");
        }
        t.freed = true;
        release(t.ptr);
    }

    // ---- dense operations -----------------------------------------------------------------------

    @Override
    public void embedding(Tensor table, int[] tokenIds, Tensor out) {
        enter();
        CudaTensor tb = tensor(table, "table");
        CudaTensor o = tensor(out, "out");
        requireRows(o, tokenIds.length, "out");
        requireCols(o, tb.cols(), "out");
        for (int id : tokenIds) {
            if (id < 0 || id >= tb.rows()) {
                throw new IllegalArgumentException("token id " + id + " is outside the vocabulary [0, " + tb.rows() + ")");
            }
        }
        if (tokenIds.length == 0) {
            return;
        }
        args().p(tb.ptr).p(ints(tokenIds)).p(o.ptr).i(o.cols()).launch("gather_rows", tokenIds.length, 1, 1, THREADS);
    }

    @Override
    public void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out) {
        enter();
        CudaTensor xs = tensor(x, "x");
        CudaTensor w = tensor(weight, "weight");
        CudaTensor o = tensor(out, "out");
        checkRmsNorm(xs, w, o);
        if (xs.rows() == 0) {
            return;
        }
        args().p(xs.ptr).p(w.ptr).p(o.ptr).i(xs.cols()).f(eps).launch("rms_norm", xs.rows(), 1, 1, rmsNormThreads(xs.cols()));
    }

    private static void checkRmsNorm(CudaTensor xs, CudaTensor w, CudaTensor o) {
        requireSameShape(xs, o);
        if (w.elements() != xs.cols()) {
            throw new IllegalArgumentException("rmsNorm weight " + w + " does not match rows of " + xs.cols());
        }
    }

    /** Block size of rms_norm and add_rms_norm: the same, so that both sum a row in the same order. */
    private static int rmsNormThreads(int cols) {
        return cols >= 4096 ? 512 : 256;
    }

    /** One kernel: x += delta (bf16), out = rmsNorm(x)·weight, the row read once; equal to add then rmsNorm. */
    @Override
    public void addRmsNorm(Tensor x, Tensor delta, Tensor weight, float eps, Tensor out) {
        enter();
        CudaTensor xs = tensor(x, "x");
        CudaTensor d = tensor(delta, "delta");
        CudaTensor w = tensor(weight, "weight");
        CudaTensor o = tensor(out, "out");
        requireSameShape(xs, d);
        checkRmsNorm(xs, w, o);
        if (xs.rows() == 0) {
            return;
        }
        args().p(xs.ptr).p(d.ptr).p(w.ptr).p(o.ptr).i(xs.cols()).f(eps)
                .launch("add_rms_norm", xs.rows(), 1, 1, rmsNormThreads(xs.cols()));
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        enter();
        CudaTensor ta = tensor(a, "a");
        CudaTensor tb = tensor(b, "b");
        CudaTensor o = tensor(out, "out");
        requireSameShape(ta, tb);
        requireSameShape(ta, o);
        long n = ta.elements();
        if (n == 0) {
            return;
        }
        args().p(ta.ptr).p(tb.ptr).p(o.ptr).l(n).launch("add", gridFor(n % 8 == 0 ? n / 8 : n), 1, 1, THREADS);
    }

    @Override
    public void matmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        enter();
        CudaTensor xs = tensor(x, "x");
        CudaTensor ws = tensor(w, "w");
        CudaTensor o = tensor(out, "out");
        if (ws.cols() != xs.cols() || o.cols() != ws.rows() || o.rows() != xs.rows()) {
            throw new IllegalArgumentException("matmul shapes do not fit: x " + xs + ", w " + ws + ", out " + o);
        }
        if (xs.rows() == 0) {
            return;
        }
        int skinnyRows = skinnyRows(xs, ws, o);
        if (skinnyRows > 0) {
            skinnyGemm(xs, ws, o, skinnyRows);
        } else {
            gemm(xs, ws, o);
        }
        if (bias != null) {
            CudaTensor bs = tensor(bias, "bias");
            if (bs.elements() != o.cols()) {
                throw new IllegalArgumentException("bias " + bs + " does not match " + o.cols() + " output features");
            }
            args().p(o.ptr).p(bs.ptr).i(o.rows()).i(o.cols()).launch("add_bias", gridFor(o.elements()), 1, 1, THREADS);
        }
    }

    @Override
    public void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        enter();
        CudaTensor xs = tensor(x, "x");
        checkRope(xs, positions, rope, numHeads, headDim);
        if (positions.length == 0) {
            return;
        }
        long invFreq = ropeTable(rope);
        args().p(xs.ptr).i(xs.cols()).p(ints(positions)).p(invFreq).i(numHeads).i(headDim).f(rope.attentionFactor())
                .launch("rope", positions.length, 1, 1, Math.min(1024, Math.max(32, roundUp(numHeads * headDim / 2, 32))));
    }

    private static void checkRope(CudaTensor xs, int[] positions, RopeTable rope, int numHeads, int headDim) {
        requireRows(xs, positions.length, "x");
        if (numHeads * headDim > xs.cols() || rope.halfDim() * 2 != headDim) {
            throw new IllegalArgumentException("rope over " + numHeads + " heads of " + headDim + " with " + rope.halfDim()
                    + " frequencies does not fit rows of " + xs.cols());
        }
    }

    /** The rope table's inverse frequencies on the device, uploaded once per table. */
    private long ropeTable(RopeTable rope) {
        return ropeTables.computeIfAbsent(rope, r -> {
            long dev = alloc(r.halfDim() * 4L);
            long off = ringAlloc(r.halfDim() * 4L);
            MemorySegment.copy(r.invFreq(), 0, ringHost, JAVA_FLOAT, off, r.halfDim());
            driver.copyHtoDAsync(dev, ringHost.asSlice(off), r.halfDim() * 4L, stream);
            return dev;
        });
    }

    @Override
    public void swiglu(Tensor gateUp, Tensor out) {
        enter();
        CudaTensor gu = tensor(gateUp, "gateUp");
        CudaTensor o = tensor(out, "out");
        if (gu.cols() % 2 != 0 || o.cols() != gu.cols() / 2 || o.rows() != gu.rows()) {
            throw new IllegalArgumentException("swiglu of " + gu + " into " + o);
        }
        if (o.elements() == 0) {
            return;
        }
        args().p(gu.ptr).p(o.ptr).i(o.rows()).i(o.cols()).launch("swiglu", gridFor(o.elements()), 1, 1, THREADS);
    }

    @Override
    public void gatherRows(Tensor x, int[] rows, Tensor out) {
        enter();
        CudaTensor xs = tensor(x, "x");
        CudaTensor o = tensor(out, "out");
        requireRows(o, rows.length, "out");
        requireCols(o, xs.cols(), "out");
        for (int r : rows) {
            if (r < 0 || r >= xs.rows()) {
                throw new IllegalArgumentException("gatherRows: row " + r + " is outside [0, " + xs.rows() + ")");
            }
        }
        if (rows.length == 0) {
            return;
        }
        args().p(xs.ptr).p(ints(rows)).p(o.ptr).i(o.cols()).launch("gather_rows", rows.length, 1, 1, THREADS);
    }

    /** {@code out = x·wᵀ} by cuBLAS; recorded and checked like a kernel launch in step graphs. */
    private void gemm(CudaTensor x, CudaTensor w, CudaTensor out) {
        if (mode == Mode.CAPTURE || mode == Mode.REPLAY) {
            LaunchRecord launch = new LaunchRecord(0, x.rows(), x.cols(), w.rows(), out.cols(), 0,
                    new long[] {x.ptr, w.ptr, out.ptr});
            if (mode == Mode.REPLAY) {
                expectRecorded(launch, "gemm");
                return;
            }
            currentGraph.launches.add(launch);
        }
        boolean profiled = profiler != null && mode != Mode.CAPTURE;
        if (profiled) {
            profiler.begin(x.rows() == 1 ? "gemm(1 row)" : x.rows() <= 64 ? "gemm(2-64 rows)" : "gemm(>64 rows)");
        }
        cublas.gemmBf16(x.ptr, w.ptr, out.ptr, x.rows(), x.cols(), w.rows(), out.cols(), Cublas.CUDA_R_16BF);
        if (profiled) {
            profiler.end();
        }
    }

    /**
     * Row capacity (8, 16, 32 or 64) of the skinny kernel that computes {@code x·wᵀ}, or 0 where cuBLAS does:
     * more than {@value #SKINNY_MAX_ROWS} rows, an input width that is not a multiple of 8 (16-byte loads), or
     * too little shared memory for two pipeline stages. Depends on shapes only (step graphs): device buffers
     * are 256-byte aligned and views start where their tensor does.
     */
    private int skinnyRows(CudaTensor x, CudaTensor w, CudaTensor out) {
        int rows = x.rows();
        if (!skinnyGemmEnabled || rows > SKINNY_MAX_ROWS || x.cols() % 8 != 0 || (x.ptr | w.ptr | out.ptr) % 16 != 0
                || (long) ceilDiv(w.rows(), SKINNY_TILE_N) * ceilDiv(x.cols(), SKINNY_STEP_K) > Integer.MAX_VALUE) {
            return 0;
        }
        int capacity = rows <= 8 ? 8 : rows <= 16 ? 16 : rows <= 32 ? 32 : 64;
        return skinnyStages(capacity) >= 2 ? capacity : 0;
    }

    /** Whether matmul of these tensors runs the skinny kernel (tests). */
    boolean usesSkinnyGemm(Tensor x, Tensor w, Tensor out) {
        return skinnyRows(tensor(x, "x"), tensor(w, "w"), tensor(out, "out")) > 0;
    }

    /** Turns the skinny kernel off (every matmul to cuBLAS) or on again; for benchmarks. */
    void setSkinnyGemm(boolean enabled) {
        skinnyGemmEnabled = enabled;
    }

    /** Depth of the skinny kernel's cp.async ring: up to 4 stages of (128 + rows) × 128 bf16 in shared memory. */
    private int skinnyStages(int capacity) {
        if (sharedPerBlockOptIn == 0) {
            sharedPerBlockOptIn = driver.deviceAttribute(device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        }
        int stage = (SKINNY_TILE_N + capacity) * SKINNY_CHUNK_K * 2;
        return Math.min(SKINNY_MAX_STAGES, (sharedPerBlockOptIn - 1024) / stage);
    }

    /**
     * {@code out = x·wᵀ} by gemm.cu's stream-K kernel: one block per SM, each streaming an equal share of the
     * (128-feature tile, 32-k step) pairs; tiles shared by several blocks are summed in a fixed order by the
     * last of them to arrive (bitwise reproducible, no memset between launches).
     */
    private void skinnyGemm(CudaTensor x, CudaTensor w, CudaTensor out, int capacity) {
        int stages = skinnyStages(capacity);
        int tiles = ceilDiv(w.rows(), SKINNY_TILE_N);
        long steps = (long) tiles * ceilDiv(x.cols(), SKINNY_STEP_K);
        int grid = (int) Math.min(multiprocessors, steps);
        ensureSkinnyWorkspace(tiles, 2L * grid * capacity * SKINNY_TILE_N * 4);
        String name = "skinny_gemm_" + capacity;
        MemorySegment function = kernels.function(name);
        int smem = stages * (SKINNY_TILE_N + capacity) * SKINNY_CHUNK_K * 2;
        if (skinnySmemRaised.add(name)) {
            driver.funcSetAttribute(function, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem);
        }
        args().p(x.ptr).p(w.ptr).p(out.ptr).i(x.rows()).i(x.cols()).i(w.rows()).i(stages).p(skinnyCounters)
                .p(skinnyPartials);
        launch(function, name, grid, 1, 1, SKINNY_THREADS, smem);
    }

    // ---- paged KV cache and attention -----------------------------------------------------------

    /** The KV cache is bf16 on the GPU. */
    @Override
    public int kvBytesPerElement() {
        return 2;
    }

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        enter();
        if (numLayers < 1 || numPages < 1 || pageSize < 1 || numKvHeads < 1 || headDim < 1) {
            throw new IllegalArgumentException("KV cache of " + numLayers + " layers, " + numPages + " pages of "
                    + pageSize + ", " + numKvHeads + " heads of " + headDim);
        }
        CudaKvStorage probe = new CudaKvStorage(this, 0, numLayers, numPages, pageSize, numKvHeads, headDim);
        long ptr = alloc(probe.totalBytes());
        driver.memsetD32Async(ptr, 0, probe.totalBytes() / 4, stream);
        return new CudaKvStorage(this, ptr, numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    @Override
    public void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        enter();
        CudaKvStorage cache = kv(kv);
        CudaTensor q = tensor(qkv, "qkv");
        checkAppendKv(cache, layer, q, kCol, vCol, slotMapping);
        if (slotMapping.length == 0) {
            return;
        }
        int kvCols = cache.numKvHeads() * cache.headDim();
        args().p(q.ptr).i(q.cols()).i(kCol).i(vCol).p(ints(slotMapping)).p(cache.keys(layer)).p(cache.values(layer))
                .i(kvCols).launch("append_kv", slotMapping.length, 1, 1, Math.min(256, roundUp(kvCols, 32)));
    }

    private static void checkAppendKv(CudaKvStorage cache, int layer, CudaTensor q, int kCol, int vCol, int[] slotMapping) {
        requireRows(q, slotMapping.length, "qkv");
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
     * angles once in shared memory (headDim floats).
     */
    @Override
    public void ropeAppendKv(Tensor qkv, int[] positions, RopeTable rope, int numHeads, int numKvHeads, int headDim,
                             KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        enter();
        CudaKvStorage cache = kv(kv);
        CudaTensor q = tensor(qkv, "qkv");
        ShapeChecks.checkRopeAppendKvLayout(numHeads, numKvHeads, headDim, kv, kCol, vCol);
        checkRope(q, positions, rope, numHeads + numKvHeads, headDim);
        checkAppendKv(cache, layer, q, kCol, vCol, slotMapping);
        if (positions.length == 0) {
            return;
        }
        int heads = numHeads + numKvHeads;
        // Work items per row: 8 rotation pairs each when the row allows 16-byte accesses, else single pairs.
        boolean vector = headDim % 16 == 0 && q.cols() % 8 == 0 && vCol % 8 == 0;
        int items = heads * (vector ? headDim / 16 : headDim / 2);
        int threads = Math.min(1024, Math.max(64, roundUp(items, 32)));
        args().p(q.ptr).i(q.cols()).p(ints(positions)).p(ropeTable(rope)).i(numHeads).i(numKvHeads).i(headDim)
                .f(rope.attentionFactor()).i(vCol).p(ints(slotMapping)).p(cache.keys(layer)).p(cache.values(layer));
        launch(kernels.function("rope_append_kv"), "rope_append_kv", positions.length, 1, 1, threads, headDim * 4);
    }

    @Override
    public void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out) {
        enter();
        CudaKvStorage cache = kv(kv);
        CudaTensor q = tensor(qkv, "qkv");
        CudaTensor o = tensor(out, "out");
        int rows = batch.numRows();
        int seqs = batch.numSequences();
        int hd = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        requireRows(q, rows, "qkv");
        requireRows(o, rows, "out");
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
        if (rows == 0) {
            return;
        }
        // Row table: rowSeq[rows] | rowPos[rows] | pageTableStarts[seqs] | pageTables[...]
        int[] pageTables = batch.pageTables();
        int[] meta = new int[2 * rows + seqs + pageTables.length];
        int maxLen = 1;
        for (int s = 0; s < seqs; s++) {
            int pages = (s + 1 < seqs ? batch.pageTableStarts()[s + 1] : pageTables.length) - batch.pageTableStarts()[s];
            if ((long) pages * batch.pageSize() < batch.contextLens()[s]) {
                throw new IllegalArgumentException("sequence " + s + " has " + batch.contextLens()[s] + " tokens but only "
                        + pages + " pages of " + batch.pageSize());
            }
            for (int r = batch.queryStarts()[s]; r < batch.queryStarts()[s + 1]; r++) {
                int pos = batch.position(s, r);
                if (pos < 0) {
                    throw new IllegalArgumentException("row " + r + " of sequence " + s + " has position " + pos);
                }
                meta[r] = s;
                meta[rows + r] = pos;
                int start = shape.slidingWindow() > 0 ? Math.max(0, pos + 1 - shape.slidingWindow()) : 0;
                maxLen = Math.max(maxLen, pos + 1 - start);
            }
            meta[2 * rows + s] = batch.pageTableStarts()[s];
        }
        for (int p : pageTables) {
            if (p < 0 || p >= cache.numPages()) {
                throw new IllegalArgumentException("page " + p + " is outside the cache's " + cache.numPages() + " pages");
            }
        }
        System.arraycopy(pageTables, 0, meta, 2 * rows + seqs, pageTables.length);
        long metaDev = ints(meta);
        long pageTablesDev = metaDev + (2L * rows + seqs) * 4;

        // Flash-decoding: split long contexts when there are too few (row, KV head) blocks to keep every
        // SM busy with several blocks (a block streams its keys serially); splits are at least 2 tiles.
        int blocks = rows * shape.numKvHeads();
        int splits = 1;
        if (blocks < 4 * multiprocessors && maxLen > 2 * ATT_TILE) {
            splits = Math.min(ceilDiv(4 * multiprocessors, blocks), ceilDiv(maxLen, 2 * ATT_TILE));
        }
        int splitLen = roundUp(ceilDiv(maxLen, splits), ATT_TILE);
        splits = ceilDiv(maxLen, splitLen);
        long partAcc = 0;
        long partMl = 0;
        if (splits > 1) {
            long accBytes = (long) rows * shape.numHeads() * splits * hd * 4;
            long mlBytes = (long) rows * shape.numHeads() * splits * 2 * 4;
            ensureAttentionWorkspace(accBytes + mlBytes);
            partAcc = attentionWorkspace;
            partMl = attentionWorkspace + accBytes;
        }
        args().p(q.ptr).i(q.cols()).p(cache.keys(layer)).p(cache.values(layer)).p(metaDev).p(pageTablesDev).i(rows)
                .i(cache.pageSize()).i(shape.numHeads()).i(shape.numKvHeads()).i(hd).f(shape.scale())
                .i(shape.slidingWindow()).i(splitLen).p(o.ptr).i(o.cols()).p(partAcc).p(partMl);
        // Dynamic shared memory: q [group][hd] f32, p [group][tile] f32, the value tile [tile][hd] bf16.
        int smem = group * hd * 4 + group * ATT_TILE * 4 + ATT_TILE * hd * 2;
        MemorySegment attentionKernel = kernels.function("attention_paged");
        if (smem > attentionSmemOptIn) {
            driver.funcSetAttribute(attentionKernel, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem);
            attentionSmemOptIn = smem;
        }
        launch(attentionKernel, "attention_paged", rows, shape.numKvHeads(), splits, 128, smem);
        if (splits > 1) {
            args().p(partAcc).p(partMl).i(shape.numHeads()).i(hd).i(splits).p(o.ptr).i(o.cols())
                    .launch("attention_merge", rows, shape.numHeads(), 1, Math.min(256, roundUp(hd, 32)));
        }
    }

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v) {
        enter();
        CudaTensor xs = tensor(x, "x");
        CudaTensor vs = tensor(v, "v");
        int[] tiles = tiles(weights, segments, xs.rows(), vs.rows());
        if (tiles.length == 0) {
            return;
        }
        int maxRank = 0;
        for (int s : segments.slots()) {
            if (weights.present(s)) {
                CudaTensor a = tensor(weights.a()[s], "A");
                int rank = weights.rank()[s];
                if (a.cols() != xs.cols() || a.rows() < rank) {
                    throw new IllegalArgumentException("LoRA A of slot " + s + " is " + a + "; expected [" + rank + ", "
                            + xs.cols() + "]");
                }
                maxRank = Math.max(maxRank, rank);
            }
        }
        if (maxRank > vs.cols()) {
            throw new IllegalArgumentException("rank " + maxRank + " does not fit the shrink output " + vs);
        }
        long table = slotTable(weights);
        int slots = weights.slots();
        args().p(xs.ptr).i(xs.cols()).p(vs.ptr).i(vs.cols()).p(ints(tiles)).p(table).p(table + 16L * slots)
                .i(xs.cols()).launch("sgmv_shrink", tiles.length / 3, ceilDiv(maxRank, SHRINK_RANKS_PER_BLOCK), 1, THREADS);
    }

    @Override
    public void sgmvExpand(Tensor v, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        enter();
        CudaTensor vs = tensor(v, "v");
        CudaTensor ys = tensor(y, "y");
        int[] tiles = tiles(weights, segments, vs.rows(), ys.rows());
        if (tiles.length == 0) {
            return;
        }
        int outFeatures = -1;
        for (int s : segments.slots()) {
            if (weights.present(s)) {
                CudaTensor b = tensor(weights.b()[s], "B");
                int rank = weights.rank()[s];
                if (b.cols() != rank || rank > vs.cols() || rank > EXPAND_MAX_RANK) {
                    throw new IllegalArgumentException("LoRA B of slot " + s + " is " + b + " for rank " + rank
                            + "; expected [out, rank] with rank ≤ min(" + vs.cols() + ", " + EXPAND_MAX_RANK + ")");
                }
                if (outFeatures >= 0 && b.rows() != outFeatures) {
                    throw new IllegalArgumentException("LoRA B of slot " + s + " has " + b.rows() + " outputs, others "
                            + outFeatures);
                }
                outFeatures = b.rows();
            }
        }
        if (yCol < 0 || yCol + outFeatures > ys.cols()) {
            throw new IllegalArgumentException("expand into columns [" + yCol + ", " + (yCol + outFeatures) + ") of " + ys);
        }
        long table = slotTable(weights);
        int slots = weights.slots();
        args().p(vs.ptr).i(vs.cols()).p(ys.ptr).i(ys.cols()).i(yCol).p(ints(tiles)).p(table + 8L * slots)
                .p(table + 16L * slots).p(table + 20L * slots).i(outFeatures)
                .launch("sgmv_expand", tiles.length / 3, ceilDiv(outFeatures, THREADS), 1, THREADS);
    }

    /** (first row, row count, slot) for every tile of at most 8 rows of every segment with an adapter here. */
    private static int[] tiles(LoraWeights weights, Segments segments, int rowsA, int rowsB) {
        int rows = segments.rows();
        if (rows > rowsA || rows > rowsB) {
            throw new IllegalArgumentException("segments cover " + rows + " rows; tensors have " + rowsA + " and " + rowsB);
        }
        int n = 0;
        for (int i = 0; i < segments.count(); i++) {
            if (weights.present(segments.slots()[i])) {
                n += ceilDiv(segments.starts()[i + 1] - segments.starts()[i], SGMV_TILE_ROWS);
            }
        }
        int[] tiles = new int[3 * n];
        int k = 0;
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (!weights.present(slot)) {
                continue;
            }
            for (int r = segments.starts()[i]; r < segments.starts()[i + 1]; r += SGMV_TILE_ROWS) {
                tiles[k++] = r;
                tiles[k++] = Math.min(SGMV_TILE_ROWS, segments.starts()[i + 1] - r);
                tiles[k++] = slot;
            }
        }
        return tiles;
    }

    /** The device table of this projection's slots, re-uploaded (in stream order) when a slot changed. */
    private long slotTable(LoraWeights weights) {
        int slots = weights.slots();
        long[] a = new long[slots];
        long[] b = new long[slots];
        int[] rank = new int[slots];
        float[] scale = new float[slots];
        for (int s = 0; s < slots; s++) {
            if (weights.present(s)) {
                a[s] = tensor(weights.a()[s], "A").ptr;
                b[s] = tensor(weights.b()[s], "B").ptr;
                rank[s] = weights.rank()[s];
                scale[s] = weights.scale()[s];
            }
        }
        SlotTable t = slotTables.get(weights);
        if (t == null) {
            t = new SlotTable(alloc(24L * slots));
            slotTables.put(weights, t);
        } else if (Arrays.equals(t.a, a) && Arrays.equals(t.b, b) && Arrays.equals(t.rank, rank)
                && Arrays.equals(t.scale, scale)) {
            return t.device;
        }
        t.a = a;
        t.b = b;
        t.rank = rank;
        t.scale = scale;
        long bytes = 24L * slots;
        long off = ringAlloc(bytes);
        MemorySegment.copy(a, 0, ringHost, JAVA_LONG, off, slots);
        MemorySegment.copy(b, 0, ringHost, JAVA_LONG, off + 8L * slots, slots);
        MemorySegment.copy(rank, 0, ringHost, JAVA_INT, off + 16L * slots, slots);
        MemorySegment.copy(scale, 0, ringHost, JAVA_FLOAT, off + 20L * slots, slots);
        driver.copyHtoDAsync(t.device, ringHost.asSlice(off), bytes, stream);
        return t.device;
    }

    // ---- plumbing -------------------------------------------------------------------------------

    private void enter() {
        if (closed) {
            throw new IllegalStateException("this CUDA backend is closed");
        }
        Thread current = Thread.currentThread();
        if (current != boundThread) {
            driver.setCurrent(context);
            boundThread = current;
        }
    }

    private long alloc(long bytes) {
        requireNotCapturing("a device allocation");
        long p = driver.memAlloc(bytes);
        liveAllocations.add(p);
        return p;
    }

    private void release(long ptr) {
        if (!liveAllocations.remove(ptr)) {
            throw new IllegalStateException("0x" + Long.toHexString(ptr) + " is not a live allocation of this backend");
        }
        driver.memFree(ptr);
    }

    private void ensureAttentionWorkspace(long bytes) {
        if (bytes <= attentionWorkspaceBytes) {
            return;
        }
        requireNotCapturing("growing the attention workspace");
        // The old buffer stays allocated until close(): recorded step graphs may still point at it.
        attentionWorkspaceBytes = Math.max(bytes, 2 * attentionWorkspaceBytes);
        attentionWorkspace = alloc(attentionWorkspaceBytes);
    }

    /**
     * Grow-only scratch of the skinny GEMM: one arrival counter per tile (zeroed here once; every launch
     * leaves its counters at zero) and the partial sums. Old buffers stay until close(): step graphs may use them.
     */
    private void ensureSkinnyWorkspace(int tiles, long partialBytes) {
        if (tiles > skinnyCounterCount) {
            requireNotCapturing("growing the skinny GEMM counters");
            int count = Math.max(Math.max(tiles, 1024), 2 * skinnyCounterCount);
            skinnyCounters = alloc(4L * count);
            driver.memsetD32Async(skinnyCounters, 0, count, stream);
            skinnyCounterCount = count;
        }
        if (partialBytes > skinnyPartialBytes) {
            requireNotCapturing("growing the skinny GEMM partials");
            skinnyPartialBytes = Math.max(partialBytes, 2 * skinnyPartialBytes);
            skinnyPartials = alloc(skinnyPartialBytes);
        }
    }

    /** An index array in the current step graph's buffer: a new place while recording, the recorded one on replay. */
    private long graphInts(int[] values) {
        Long known = stepUploads.get(values);
        if (known != null) {
            return known;
        }
        StepGraph g = currentGraph;
        long bytes = roundUp(Math.max(4L, values.length * 4L), 16);
        long offset;
        if (mode == Mode.CAPTURE) {
            offset = g.used;
            if (offset + bytes > g.capacity) {
                throw new GraphMismatch("the step's index arrays outgrew the " + g.capacity + " bytes measured");
            }
            g.slotOffsets.add(offset);
            g.slotLengths.add(values.length);
            g.used += bytes;
        } else {
            int k = slotCursor++;
            if (k >= g.slotLengths.size() || g.slotLengths.get(k) != values.length) {
                throw new GraphMismatch("index array " + k + " has " + values.length + " entries, recorded "
                        + (k < g.slotLengths.size() ? g.slotLengths.get(k) : "none"));
            }
            offset = g.slotOffsets.get(k);
        }
        MemorySegment.copy(values, 0, g.host, JAVA_INT, offset, values.length);
        stepUploads.put(values, g.device + offset);
        return g.device + offset;
    }

    /** Refuses work that a CUDA graph cannot hold (host uploads, allocation, synchronisation) while recording. */
    private void requireNotCapturing(String what) {
        if (mode == Mode.CAPTURE) {
            throw new GraphMismatch(what + " inside a recorded step");
        }
    }

    /** Reserves ring space; when the ring is full, waits for the stream and starts over. */
    private long ringAlloc(long bytes) {
        requireNotCapturing("a host upload");
        long aligned = roundUp(bytes, 256);
        if (aligned > RING_BYTES) {
            throw new IllegalArgumentException(bytes + " bytes do not fit the " + RING_BYTES + "-byte staging ring");
        }
        if (ringOffset + aligned > RING_BYTES) {
            driver.streamSynchronize(stream);
            ringOffset = 0;
            ringEpoch++;
            recentUploads.clear();
        }
        long off = ringOffset;
        ringOffset += aligned;
        return off;
    }

    /**
     * A device copy of {@code values}: shared with an equal array uploaded recently, or, while a step
     * graph is recorded or replayed, at this array's place in the graph's own buffer.
     */
    private long ints(int[] values) {
        if (mode == Mode.CAPTURE || mode == Mode.REPLAY) {
            return graphInts(values);
        }
        if (mode == Mode.MEASURE && stepUploads.put(values, 0L) == null) {
            measuredBytes += roundUp(Math.max(4L, values.length * 4L), 16);
        }
        for (IntUpload u : recentUploads) {
            if (u.epoch == ringEpoch && Arrays.equals(u.values, values)) {
                return u.device;
            }
        }
        long bytes = Math.max(4L, values.length * 4L);
        long off = ringAlloc(bytes);
        MemorySegment.copy(values, 0, ringHost, JAVA_INT, off, values.length);
        driver.copyHtoDAsync(ringDevice + off, ringHost.asSlice(off), bytes, stream);
        if (values.length <= 1 << 16) {
            recentUploads.addFirst(new IntUpload(values.clone(), ringEpoch, ringDevice + off));
            if (recentUploads.size() > 16) {
                recentUploads.removeLast();
            }
        }
        return ringDevice + off;
    }

    private void uploadWeightData(TensorData w, long dst) {
        DType type = w.dtype();
        long n = w.elementCount();
        long elemBytes = type.byteSize();
        if (w.data().byteSize() < n * elemBytes) {
            throw new IllegalArgumentException(w + " holds " + w.data().byteSize() + " bytes, fewer than its shape needs");
        }
        long chunk = RING_BYTES / 4 / elemBytes;
        for (long e = 0; e < n; e += chunk) {
            long count = Math.min(chunk, n - e);
            long off = ringAlloc(count * elemBytes);
            MemorySegment.copy(w.data(), e * elemBytes, ringHost, off, count * elemBytes);
            switch (type) {
                case BF16 -> driver.copyHtoDAsync(dst + e * 2, ringHost.asSlice(off), count * 2, stream);
                case F32 -> {
                    driver.copyHtoDAsync(ringDevice + off, ringHost.asSlice(off), count * 4, stream);
                    convert("f32_to_bf16", ringDevice + off, dst + e * 2, count);
                }
                case F16 -> {
                    driver.copyHtoDAsync(ringDevice + off, ringHost.asSlice(off), count * 2, stream);
                    convert("f16_to_bf16", ringDevice + off, dst + e * 2, count);
                }
            }
        }
    }

    private void convert(String kernel, long src, long dst, long n) {
        if (n > 0) {
            args().p(src).p(dst).l(n).launch(kernel, gridFor(n), 1, 1, THREADS);
        }
    }

    private int gridFor(long n) {
        return (int) Math.max(1, Math.min(ceilDiv(n, THREADS), 8L * multiprocessors));
    }

    private CudaTensor tensor(Tensor t, String what) {
        if (!(t instanceof CudaTensor c) || c.owner != this) {
            throw new IllegalArgumentException(what + " " + t + " was not made by this CUDA backend");
        }
        if (c.root.freed) {
            throw new IllegalStateException(what + " " + t + " was freed");
        }
        return c;
    }

    private CudaKvStorage kv(KvStorage kv) {
        if (!(kv instanceof CudaKvStorage c) || c.owner() != this) {
            throw new IllegalArgumentException("KV storage " + kv + " was not made by this CUDA backend");
        }
        return c;
    }

    private static void checkShape(int rows, int cols) {
        if (rows < 0 || cols < 1) {
            throw new IllegalArgumentException("tensor shape [" + rows + ", " + cols + "]");
        }
    }

    private static void requireRows(CudaTensor t, int rows, String what) {
        if (t.rows() != rows) {
            throw new IllegalArgumentException(what + " " + t + " should have " + rows + " rows");
        }
    }

    private static void requireCols(CudaTensor t, int cols, String what) {
        if (t.cols() != cols) {
            throw new IllegalArgumentException(what + " " + t + " should have " + cols + " columns");
        }
    }

    private static void requireSameShape(CudaTensor a, CudaTensor b) {
        if (a.rows() != b.rows() || a.cols() != b.cols()) {
            throw new IllegalArgumentException("shapes differ: " + a + " and " + b);
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    private static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    private static int roundUp(int a, int b) {
        return ceilDiv(a, b) * b;
    }

    private static long roundUp(long a, long b) {
        return ceilDiv(a, b) * b;
    }

    // ---- kernel launches --------------------------------------------------------------------------

    /** Starts a kernel argument list (one reusable block: the driver copies it at launch). */
    private CudaBackend args() {
        argCount = 0;
        return this;
    }

    private CudaBackend p(long devicePointer) {
        launchValues.set(JAVA_LONG, 8L * argCount++, devicePointer);
        return this;
    }

    private CudaBackend l(long value) {
        return p(value);
    }

    private CudaBackend i(int value) {
        launchValues.set(JAVA_LONG, 8L * argCount, 0L); // whole words, so recorded launches compare exactly
        launchValues.set(JAVA_INT, 8L * argCount++, value);
        return this;
    }

    private CudaBackend f(float value) {
        launchValues.set(JAVA_LONG, 8L * argCount, 0L);
        launchValues.set(JAVA_FLOAT, 8L * argCount++, value);
        return this;
    }

    private void launch(String kernel, int gx, int gy, int gz, int threads) {
        launch(kernels.function(kernel), kernel, gx, gy, gz, threads, 0);
    }

    /**
     * Every kernel launch goes through here with the arguments set by {@link #args()}: enqueued (and
     * recorded while a step graph is captured), or, on replay, only compared with the recorded launch.
     */
    private void launch(MemorySegment function, String name, int gx, int gy, int gz, int threads, int smem) {
        if (mode == Mode.CAPTURE || mode == Mode.REPLAY) {
            long[] words = new long[argCount];
            MemorySegment.copy(launchValues, JAVA_LONG, 0, words, 0, argCount);
            LaunchRecord launch = new LaunchRecord(function.address(), gx, gy, gz, threads, smem, words);
            if (mode == Mode.REPLAY) {
                expectRecorded(launch, name);
                return;
            }
            currentGraph.launches.add(launch);
        }
        boolean profiled = profiler != null && mode != Mode.CAPTURE;
        if (profiled) {
            profiler.begin(name);
        }
        driver.launchKernel(function, gx, gy, gz, threads, 1, 1, smem, stream, launchPointers, name);
        if (profiled) {
            profiler.end();
        }
    }

    private void expectRecorded(LaunchRecord launch, String name) {
        List<LaunchRecord> recorded = currentGraph.launches;
        int k = launchCursor++;
        if (k >= recorded.size() || !recorded.get(k).sameAs(launch)) {
            throw new GraphMismatch(name + " (launch " + k + ") differs from the recording: " + launch + " vs "
                    + (k < recorded.size() ? recorded.get(k) : "none"));
        }
    }

    /**
     * Device time per kernel since the last call, as a table, when the backend was started with
     * {@code -Dpunica.cuda.profile=true}; null otherwise. Waits for the stream.
     */
    @Override
    public String profileReport() {
        enter();
        return profiler == null ? null : profiler.report();
    }

    /**
     * A CUDA graph of the work that {@code work} enqueues, for replay with {@link CudaGraph#launch()}.
     * Everything {@code work} uploads must already be resident (call it once before capturing, so that
     * its metadata uploads hit the staging cache); a capture cannot wait for the stream.
     */
    public CudaGraph capture(Runnable work) {
        enter();
        driver.streamBeginCapture(stream);
        MemorySegment graph;
        try {
            work.run();
        } finally {
            graph = driver.streamEndCapture(stream);
        }
        try {
            return new CudaGraph(driver.graphInstantiate(graph));
        } finally {
            driver.graphDestroy(graph);
        }
    }

    /** An instantiated CUDA graph on this backend's stream. */
    public final class CudaGraph implements AutoCloseable {
        private final MemorySegment exec;

        private CudaGraph(MemorySegment exec) {
            this.exec = exec;
        }

        public void launch() {
            enter();
            driver.graphLaunch(exec, stream);
        }

        @Override
        public void close() {
            driver.graphExecDestroy(exec);
        }
    }

    // ---- step graphs ----------------------------------------------------------------------------

    /** Step graphs, unless turned off (-Dpunica.cuda.graphs=false or {@link #setStepGraphs}). */
    @Override
    public StepRecorder stepRecorder() {
        return stepGraphsEnabled ? recorder : null;
    }

    /** Turns step graphs on or off for models loaded afterwards (a model asks once, when it is loaded). */
    public void setStepGraphs(boolean enabled) {
        stepGraphsEnabled = enabled;
    }

    private final StepRecorder recorder = new StepRecorder() {
        @Override
        public void run(Object key, Runnable step) {
            runStep(key, step);
        }

        @Override
        public void clear() {
            enter();
            if (!stepGraphs.isEmpty()) {
                driver.streamSynchronize(stream);
                stepGraphs.values().forEach(StepGraph::close);
                stepGraphs.clear();
            }
            unrecordable.clear();
            rerecorded.clear();
        }

        @Override
        public int recordings() {
            return stepGraphs.size();
        }

        @Override
        public long replays() {
            return replayCount;
        }

        @Override
        public long records() {
            return recordCount;
        }
    };

    private void runStep(Object key, Runnable step) {
        enter();
        StepGraph graph = stepGraphs.get(key);
        if (graph != null) {
            if (replay(graph, step)) {
                replayCount++;
                return;
            }
            stepGraphs.remove(key);
            discard(graph);
            if (rerecorded.merge(key, 1, Integer::sum) > MAX_RERECORDS) {
                log.warn("steps of one shape keep differing from their CUDA graph; running them without one: {}", key);
                unrecordable.add(key);
            }
        }
        // Eagerly, measuring the index arrays a recording will need room for.
        mode = Mode.MEASURE;
        measuredBytes = 0;
        try {
            step.run();
        } finally {
            mode = Mode.EAGER;
            stepUploads.clear();
        }
        if (unrecordable.contains(key)) {
            return;
        }
        if (stepGraphs.size() >= MAX_STEP_GRAPHS) {
            Iterator<Map.Entry<Object, StepGraph>> eldest = stepGraphs.entrySet().iterator();
            StepGraph old = eldest.next().getValue();
            eldest.remove();
            discard(old);
        }
        StepGraph recorded = record(step, roundUp(measuredBytes + 256, 4096));
        if (recorded != null) {
            stepGraphs.put(key, recorded);
            recordCount++;
        } else {
            unrecordable.add(key);
        }
    }

    /** Captures {@code step} (which does not execute); null when it cannot be recorded. */
    private StepGraph record(Runnable step, long capacity) {
        StepGraph g = new StepGraph(capacity);
        RuntimeException failure = null;
        MemorySegment graph = null;
        mode = Mode.CAPTURE;
        currentGraph = g;
        driver.streamBeginCapture(stream);
        try {
            step.run();
        } catch (RuntimeException e) {
            failure = e;
        } finally {
            mode = Mode.EAGER;
            currentGraph = null;
            stepUploads.clear();
            try {
                graph = driver.streamEndCapture(stream);
            } catch (CudaException e) {
                if (failure == null) {
                    failure = e;
                }
            }
        }
        try {
            if (failure == null) {
                g.exec = driver.graphInstantiate(graph);
            }
        } catch (CudaException e) {
            failure = e;
        } finally {
            if (graph != null && graph.address() != 0) {
                driver.graphDestroy(graph);
            }
        }
        if (failure != null) {
            log.warn("a step of this shape will run without a CUDA graph: {}", failure.getMessage());
            g.close();
            return null;
        }
        return g;
    }

    /** Runs the step's host code in replay mode; true when it matched the recording and the graph was launched. */
    private boolean replay(StepGraph g, Runnable step) {
        driver.eventSynchronize(g.uploaded); // the last replay's copy has left the host buffer
        mode = Mode.REPLAY;
        currentGraph = g;
        slotCursor = 0;
        launchCursor = 0;
        try {
            step.run();
            if (launchCursor != g.launches.size() || slotCursor != g.slotLengths.size()) {
                throw new GraphMismatch("the step made " + launchCursor + " launches and " + slotCursor
                        + " uploads; the recording has " + g.launches.size() + " and " + g.slotLengths.size());
            }
        } catch (GraphMismatch e) {
            log.debug("step graph not replayed: {}", e.getMessage());
            return false;
        } finally {
            mode = Mode.EAGER;
            currentGraph = null;
            stepUploads.clear();
        }
        driver.copyHtoDAsync(g.device, g.host, g.used, stream);
        driver.eventRecord(g.uploaded, stream);
        if (profiler != null) {
            profiler.begin("step graph");
        }
        driver.graphLaunch(g.exec, stream);
        if (profiler != null) {
            profiler.end();
        }
        return true;
    }

    private void discard(StepGraph g) {
        driver.streamSynchronize(stream);
        g.close();
    }

    /** Device time of {@code work} in milliseconds, measured with events on this backend's stream. */
    public float timeMillis(Runnable work) {
        enter();
        MemorySegment start = driver.eventCreate();
        MemorySegment end = driver.eventCreate();
        try {
            driver.eventRecord(start, stream);
            work.run();
            driver.eventRecord(end, stream);
            driver.eventSynchronize(end);
            return driver.eventElapsedMillis(start, end);
        } finally {
            driver.eventDestroy(start);
            driver.eventDestroy(end);
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        enter();
        driver.streamSynchronize(stream);
        for (StepGraph g : stepGraphs.values()) {
            g.close();
        }
        stepGraphs.clear();
        closed = true;
        for (Iterator<Long> it = liveAllocations.iterator(); it.hasNext(); ) {
            driver.memFree(it.next());
            it.remove();
        }
        slotTables.clear();
        ropeTables.clear();
        if (profiler != null) {
            profiler.close();
        }
        cublas.close();
        driver.memFree(cublasWorkspace);
        driver.memFree(ringDevice);
        driver.memFreeHost(ringHost);
        kernels.close();
        driver.streamDestroy(stream);
        driver.primaryContextRelease(device);
        arena.close();
    }
}
