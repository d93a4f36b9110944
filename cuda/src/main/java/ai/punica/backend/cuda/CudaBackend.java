package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.DeviceMemory;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
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
    /** Steps of up to this many tiles cut segments into one-row tiles when every row fits a tile. */
    private static final int SGMV_ROW_TILES_UP_TO = 64;
    private static final int SHRINK_RANKS_PER_BLOCK = 32;
    /** Most projections one grouped SGMV launch covers (q|k|v). */
    private static final int SGMV_GROUP_MAX = 3;
    /** A split-K shrink block covers at least this many inputs (fewer would spend more on the reduction). */
    private static final int SHRINK_MIN_SPLIT = 512;
    /** Split-K aims at this many shrink blocks per SM (a decode batch has too few tiles to fill the GPU). */
    private static final int SHRINK_BLOCKS_PER_SM = 4;
    /** Fp32 partial sums one shrink block leaves for the split-K reduction: 32 ranks × 8 rows. */
    private static final int SHRINK_PARTIAL_FLOATS = 32 * 8;
    /** Device blocks are sized, and kept on the free lists, in multiples of this. */
    private static final long BLOCK_ALIGN = 256;
    private static final int EXPAND_MAX_RANK = 256;
    /** sgmv.cu's fused decode kernel: blocks per cluster (one (row, projection) each) and its largest rank. */
    private static final int FUSED_CLUSTER = 8;
    private static final int FUSED_MAX_RANK = 64;
    /**
     * Decode batches of more tiles than this take the fused kernel; smaller ones the two launches with the
     * shrink overlapping the GEMM. On an H200 (ProjectionBench, Llama-7B projections, rank 16) the LoRA of a
     * 32-layer step cost 0.48 ms overlapped against 1.15 ms fused at 1 row, 0.99 against 1.19 at 8 rows; at 32
     * rows both about 1.65 in the bench, and in the decode step the fused kernel was 0.3 ms faster.
     */
    private static final int FUSED_MIN_TILES = 8;
    private int fusedMinTiles = FUSED_MIN_TILES;
    private long fusedLaunches;
    private static final int ATT_TILE = 128;
    private static final int ATT_MAX_GROUP = 16;
    private static final int ATT_MAX_HEAD_DIM = 256;
    /** Most flash-decoding splits of one row (both attention kernels). */
    private static final int ATT_MAX_SPLITS = 32;
    private static final int DECODE_THREADS = 128;
    /** sampling.cu: one block of SAMPLE_THREADS per row, 16 histogram cells per thread, ints per row in and out. */
    private static final int SAMPLE_THREADS = 1024;
    private static final int SAMPLE_SMEM = 16 * SAMPLE_THREADS * 4;
    private static final int SAMPLE_ROW_INTS = 12;
    private static final int SAMPLE_OUT_INTS = 3 + 2 * SamplingRow.MAX_LOGPROBS;
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
    /**
     * Where {@link #matmulLora} runs the SGMV shrink while the GEMM of the same input runs on {@link #stream}:
     * forked from the main stream after everything enqueued so far, joined back before the expand.
     */
    private final MemorySegment sideStream;
    private final MemorySegment forkEvent;
    private final MemorySegment joinEvent;
    /** The stream {@link #launch} enqueues on: {@link #stream}, or {@link #sideStream} inside a fork. */
    private MemorySegment launchStream;
    private boolean shrinkOnSide;
    private boolean sideForked;
    private boolean loraOverlap = !"false".equals(System.getProperty("punica.cuda.loraOverlap"));
    /** Decode-step LoRA in one cluster launch per projection group (sm_90+), see {@link #sgmvFusedRows}. */
    private boolean fusedLora;
    private final KernelModules kernels;
    private final Cublas cublas;
    private final long cublasWorkspace;
    private final int multiprocessors;
    private final String deviceName;
    private final int ccMajor;
    private final int ccMinor;
    /**
     * The context each thread last made current through any CudaBackend: with one engine per GPU in a
     * process, a thread (the one that builds the engines, say) may use backends on several devices in turn.
     */
    private static final ThreadLocal<Long> threadContext = new ThreadLocal<>();

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

    /**
     * A slot table on the device: aPtr[slots] | bPtr[slots] | rank[slots] | scale[slots], and what the host
     * checked when it wrote it: the LoRA weights it was written from (the tensors by identity), and the
     * shapes every present slot agrees on. Every SGMV call of a step asks for its tables (about 450 calls in a
     * Llama-7B step); an unchanged projection is recognised by comparing references and numbers, without
     * touching a tensor (each would be a pointer chase through the heap, for 64 slots, 450 times a step).
     */
    private static final class SlotTable {
        final long device;
        final Tensor[] a;
        final Tensor[] b;
        final int[] rank;
        final float[] scale;
        /** {@link #freedTensors} when this was checked: a tensor freed since may be one of the table's. */
        long freedAt = -1;
        /** A's columns and B's rows, the same for every present slot; -1 while no slot is present. */
        int inFeatures = -1;
        int outFeatures = -1;

        SlotTable(long device, int slots) {
            this.device = device;
            this.a = new Tensor[slots];
            this.b = new Tensor[slots];
            this.rank = new int[slots];
            this.scale = new float[slots];
        }

        /** Whether the table holds {@code w}'s slots and no tensor has been freed since it was checked. */
        boolean holds(LoraWeights w, long freed) {
            if (freed != freedAt) {
                return false;
            }
            Tensor[] wa = w.a();
            Tensor[] wb = w.b();
            int[] wr = w.rank();
            float[] ws = w.scale();
            for (int s = 0; s < a.length; s++) {
                Tensor ta = wa[s];
                if (ta != a[s] || wb[s] != b[s]) {
                    return false;
                }
                if (ta != null && (wr[s] != rank[s] || Float.floatToRawIntBits(ws[s]) != Float.floatToRawIntBits(scale[s]))) {
                    return false;
                }
            }
            return true;
        }
    }

    private final Map<LoraWeights, SlotTable> slotTables = new IdentityHashMap<>();
    /** Tensors (and adapter blocks) freed so far: a slot table checked before the last free is checked again. */
    private long freedTensors;
    private final Map<RopeTable, Long> ropeTables = new IdentityHashMap<>();
    private long attentionWorkspace;
    /** Dynamic shared memory the attention kernel was allowed beyond the default 48 KB. */
    private int attentionSmemOptIn = 48 * 1024;
    private long attentionWorkspaceBytes;
    /** Device blocks in use: address → size (a multiple of {@link #BLOCK_ALIGN}). */
    private final Map<Long, Long> liveAllocations = new HashMap<>();
    /**
     * Freed device blocks by size, taken again by {@link #alloc} before it asks the driver: adapters coming
     * and going reuse each other's memory with no cuMemFree (which waits for the whole device) or cuMemAlloc.
     */
    private final Map<Long, ArrayDeque<Long>> freeBlocks = new HashMap<>();
    private long freeBlockBytes;
    private long reusedBlocks;
    private long driverAllocations;
    /** The copy stream for {@link #loadWeightsAsync}, made on first use. */
    private WeightUploader uploader;
    private final Set<AsyncWeights> openUploads = Collections.newSetFromMap(new IdentityHashMap<>());
    /** Split-K shrink scratch: fp32 partial sums, then one arrival counter per (tile, rank block). */
    private long sgmvWorkspace;
    private record SgmvTiles(Segments segments, int count, int[] tiles) {
    }

    /** Tile tables of recent steps by Segments identity: all projections of all layers share one array. */
    private final ArrayDeque<SgmvTiles> recentTiles = new ArrayDeque<>();
    /** Workspaces outgrown by a larger batch: kernels in flight or captured graphs may still use them. */
    private final List<Long> retiredAttentionWorkspaces = new ArrayList<>();
    private boolean decodeAttentionKernel = true;
    /** The batch (and cache) last checked: the layers of a step pass the same immutable batch. */
    private AttentionBatch checkedAttentionBatch;
    private CudaKvStorage checkedAttentionCache;
    /** Decode attention splits rows until there are this many blocks per SM (the grid fills the GPU a few times). */
    private int decodeBlocksPerSm = 8;
    /**
     * Skinny GEMM (gemm.cu), off unless -Dpunica.cuda.skinnyGemm=true: on an H100 cuBLAS streamed the Llama-7B
     * decode weights faster at every row count from 1 to 64 (docs/benchmarks/2026-11-25-s2-cuda-decode.md).
     * Per-tile arrival counters (zero between launches) and partials.
     */
    private boolean skinnyGemmEnabled = Boolean.getBoolean("punica.cuda.skinnyGemm");
    private long skinnyCounters;
    private int skinnyCounterCount;
    private long skinnyPartials;
    private long skinnyPartialBytes;
    private int sharedPerBlockOptIn;
    private final Set<String> skinnySmemRaised = new HashSet<>();
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
    private record LaunchRecord(long function, int gx, int gy, int gz, int threads, int smem, boolean side,
                                long[] args) {
        boolean sameAs(LaunchRecord o) {
            return function == o.function && gx == o.gx && gy == o.gy && gz == o.gz && threads == o.threads
                    && smem == o.smem && side == o.side && Arrays.equals(args, o.args);
        }

        @Override
        public String toString() {
            return "launch 0x" + Long.toHexString(function) + " grid " + gx + "x" + gy + "x" + gz
                    + (side ? " (side stream)" : "") + " args " + Arrays.toString(args);
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
    /** Keys whose replays failed since their last good one, with how often: a key that keeps failing stops being recorded. */
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
    /** float32 [rows, vocab] work rows of the sampling kernel; grows, never shrinks. */
    private long samplingWorkspace;
    private long samplingWorkspaceBytes;
    private boolean samplingSmemOptIn;
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
        threadContext.set(context.address());
        multiprocessors = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        ccMajor = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        ccMinor = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        deviceName = driver.deviceName(device);
        if (ccMajor < 8) {
            throw new CudaException(deviceName + " has compute capability " + ccMajor + "." + ccMinor
                    + "; the CUDA backend needs 8.0 or newer (bf16)");
        }
        fusedLora = ccMajor >= 9 && !"false".equals(System.getProperty("punica.cuda.fusedLora"));
        stream = driver.streamCreate(Driver.CU_STREAM_NON_BLOCKING);
        sideStream = driver.streamCreate(Driver.CU_STREAM_NON_BLOCKING);
        forkEvent = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        joinEvent = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        launchStream = stream;
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
        profiler = Boolean.getBoolean("punica.cuda.profile") ? new KernelProfiler(driver) : null;
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

    /**
     * Copies the weights on a second stream while the compute stream runs on. All of them go into one
     * device block (each at a 256-byte boundary): an adapter takes one free-list entry, of the same size as
     * the next adapter of its shape, and travels in a few large transfers from {@link WeightUploader}'s
     * pinned staging buffers. This thread only takes the block and queues the copy; the upload thread
     * converts and copies. The tensors may be read once {@link WeightUpload#isDone()} (an event query,
     * never blocking) returns true.
     */
    @Override
    public WeightUpload loadWeightsAsync(List<TensorData> weights) {
        enter();
        int n = weights.size();
        long[] offsets = new long[n];
        int[][] shapes = new int[n][];
        long bytes = 0;
        for (int i = 0; i < n; i++) {
            TensorData w = weights.get(i);
            shapes[i] = w.matrixShape("loadWeightsAsync");
            checkShape(shapes[i][0], shapes[i][1]);
            if (w.data().byteSize() < w.elementCount() * w.dtype().byteSize()) {
                throw new IllegalArgumentException(w + " holds " + w.data().byteSize() + " bytes, fewer than its shape needs");
            }
            offsets[i] = bytes;
            bytes = roundUp(bytes + w.elementCount() * 2, BLOCK_ALIGN);
        }
        if (uploader == null) {
            uploader = new WeightUploader(driver, context);
        }
        long ptr = alloc(bytes);
        CudaTensor block = new CudaTensor(this, ptr, (int) Math.max(1, bytes / BLOCK_ALIGN), (int) BLOCK_ALIGN / 2,
                DType.BF16, null);
        List<Tensor> tensors = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            tensors.add(new CudaTensor(this, ptr + offsets[i], shapes[i][0], shapes[i][1], DType.BF16, block));
        }
        MemorySegment ready = null;
        MemorySegment done = null;
        try {
            ready = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
            done = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
            // The copy stream starts after the compute work enqueued so far (which may still read the block).
            driver.eventRecord(ready, stream);
        } catch (RuntimeException e) {
            if (ready != null) {
                driver.eventDestroy(ready);
            }
            if (done != null) {
                driver.eventDestroy(done);
            }
            release(ptr);
            throw e;
        }
        WeightUploader.Job job = new WeightUploader.Job(List.copyOf(weights), offsets, ptr, ready, done);
        AsyncWeights upload = new AsyncWeights(block, List.copyOf(tensors), job);
        openUploads.add(upload);
        uploader.submit(job);
        return upload;
    }

    /** An adapter's weights in one device block, filled on the copy stream. Engine thread only. */
    private final class AsyncWeights implements WeightUpload {
        private final CudaTensor block;
        private final List<Tensor> tensors;
        private final WeightUploader.Job job;
        private boolean done;
        private boolean closed;

        AsyncWeights(CudaTensor block, List<Tensor> tensors, WeightUploader.Job job) {
            this.block = block;
            this.tensors = tensors;
            this.job = job;
        }

        @Override
        public List<Tensor> tensors() {
            return tensors;
        }

        @Override
        public boolean isDone() {
            if (closed) {
                throw new IllegalStateException("this weight upload was closed");
            }
            if (done) {
                return true;
            }
            enter();
            if (job.finished.getCount() > 0) {
                return false;
            }
            if (job.failure != null) {
                throw new CudaException("copying " + job.weights.size() + " weights to the device failed: "
                        + job.failure.getMessage(), job.failure);
            }
            done = driver.eventQuery(job.done);
            return done;
        }

        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            if (CudaBackend.this.closed) {
                return; // the backend's close freed the block and the events
            }
            enter();
            if (!done) {
                uploader.cancel(job);
                // Copies already on the copy stream may still write the block: work enqueued on the compute
                // stream from now on (including whoever reuses the block) waits for them.
                if (job.recorded) {
                    driver.streamWaitEvent(stream, job.done);
                }
            }
            destroyEvents();
            openUploads.remove(this);
            block.freed = true;
            freedTensors++;
            release(block.ptr);
        }

        void destroyEvents() {
            driver.eventDestroy(job.ready);
            driver.eventDestroy(job.done);
        }
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
        freedTensors++;
        release(t.ptr);
    }

    // ---- dense operations -----------------------------------------------------------------------

    @Override
    public void embedding(Tensor table, int[] tokenIds, Tensor out) {
        gather(tensor(table, "table"), tokenIds, tensor(out, "out"), "token id", "the vocabulary");
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
        gather(tensor(x, "x"), rows, tensor(out, "out"), "gatherRows: row", "the rows of x");
    }

    /** {@code out[i] = source[indices[i]]} (embedding lookups and logit-row gathers are the same kernel). */
    private void gather(CudaTensor source, int[] indices, CudaTensor out, String what, String range) {
        enter();
        requireRows(out, indices.length, "out");
        requireCols(out, source.cols(), "out");
        for (int index : indices) {
            if (index < 0 || index >= source.rows()) {
                throw new IllegalArgumentException(what + " " + index + " is outside " + range + " [0, " + source.rows()
                        + ")");
            }
        }
        if (indices.length == 0) {
            return;
        }
        args().p(source.ptr).p(ints(indices)).p(out.ptr).i(out.cols())
                .launch("gather_rows", indices.length, 1, 1, THREADS);
    }

    /** {@code out = x·wᵀ} by cuBLAS; recorded and checked like a kernel launch in step graphs. */
    private void gemm(CudaTensor x, CudaTensor w, CudaTensor out) {
        if (mode == Mode.CAPTURE || mode == Mode.REPLAY) {
            LaunchRecord launch = new LaunchRecord(0, x.rows(), x.cols(), w.rows(), out.cols(), 0, false,
                    new long[] {x.ptr, w.ptr, out.ptr});
            if (mode == Mode.REPLAY) {
                expectRecorded(launch, "gemm");
                return;
            }
            currentGraph.launches.add(launch);
        }
        boolean profiled = profiler != null && mode != Mode.CAPTURE;
        if (profiled) {
            profiler.begin(x.rows() == 1 ? "gemm(1 row)" : x.rows() <= 64 ? "gemm(2-64 rows)" : "gemm(>64 rows)", stream);
        }
        cublas.gemmBf16(x.ptr, w.ptr, out.ptr, x.rows(), x.cols(), w.rows(), out.cols(), Cublas.CUDA_R_16BF);
        if (profiled) {
            profiler.end(stream);
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

    @Override
    public Optional<DeviceMemory> deviceMemory() {
        enter();
        long[] info = driver.memInfo();
        return Optional.of(new DeviceMemory(info[0], info[1]));
    }

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
        if (batch != checkedAttentionBatch || cache != checkedAttentionCache) {
            checkAttentionBatch(batch, cache);
            checkedAttentionBatch = batch;
            checkedAttentionCache = cache;
        }
        if (rows == 0) {
            return;
        }
        if (decodeAttentionKernel && oneRowPerSequence(batch)) {
            attentionDecode(q, cache, layer, batch, shape, o);
        } else {
            attentionGeneral(q, cache, layer, batch, shape, o);
        }
    }

    /**
     * Sequences, rows and page tables agree: rows ascend, every query row has a position ≥ 0, every
     * sequence has the pages its context needs, and those pages exist. The kernels trust all of this.
     */
    private static void checkAttentionBatch(AttentionBatch batch, CudaKvStorage cache) {
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
                    throw new IllegalArgumentException("page " + pageTables[i] + " (pageTables[" + i + "], sequence " + s
                            + ") is outside the cache's " + cache.numPages() + " pages");
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
    private void attentionDecode(CudaTensor q, CudaKvStorage cache, int layer, AttentionBatch batch,
                                 AttentionShape shape, CudaTensor o) {
        int rows = batch.numRows();
        int hd = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        int headsPerPass = decodeHeadsPerPass(group);
        int lanes = hd <= 64 ? 8 : hd <= 128 ? 16 : 32;
        long blocks = (long) rows * shape.numKvHeads() * ceilDiv(group, headsPerPass);
        if (blocks > Integer.MAX_VALUE) {
            throw new UnsupportedOperationException("decode attention over " + rows + " rows of " + shape
                    + " needs more than 2^31 blocks");
        }
        int splits = attentionDecodeSplits(rows, shape);
        long partAcc = 0;
        long partMl = 0;
        if (splits > 1) {
            ensureAttentionWorkspace(attentionWorkspaceBytes(rows, shape, splits));
            partAcc = attentionWorkspace;
            partMl = attentionWorkspace + (long) rows * shape.numHeads() * splits * hd * 4;
        }
        int pageSize = cache.pageSize();
        int pageShift = Integer.bitCount(pageSize) == 1 ? Integer.numberOfTrailingZeros(pageSize) : -1;
        args().p(q.ptr).i(q.cols()).p(cache.keys(layer)).p(cache.values(layer)).p(ints(batch.contextLens()))
                .p(ints(batch.pageTableStarts())).p(ints(batch.pageTables())).i(pageSize).i(pageShift)
                .i(shape.numHeads()).i(shape.numKvHeads()).i(hd).f(shape.scale()).i(shape.slidingWindow())
                .p(o.ptr).i(o.cols()).p(partAcc).p(partMl)
                .launch("attention_decode_l" + lanes + "_g" + headsPerPass, (int) blocks, splits, 1, DECODE_THREADS);
        mergeAttentionSplits(partAcc, partMl, rows, shape, splits, o);
    }

    /** Query heads one decode block carries: the group, rounded up to 1, 2, 4 or 8 (larger groups take passes of 8). */
    private static int decodeHeadsPerPass(int group) {
        return group <= 2 ? group : group <= 4 ? 4 : 8;
    }

    /**
     * Flash-decoding splits of a decode step of {@code rows} rows: enough blocks for
     * {@code decodeBlocksPerSm} per SM, at most {@link #ATT_MAX_SPLITS}. Shapes and the device only.
     */
    int attentionDecodeSplits(int rows, AttentionShape shape) {
        int group = shape.numHeads() / shape.numKvHeads();
        long blocks = (long) rows * shape.numKvHeads() * ceilDiv(group, decodeHeadsPerPass(group));
        return Math.clamp(ceilDiv((long) decodeBlocksPerSm * multiprocessors, Math.max(1L, blocks)), 1, ATT_MAX_SPLITS);
    }

    /**
     * Any mix of prefill and decode rows ({@code attention_paged}): one block per (row, KV head, split), the
     * splits fixed by shapes (enough blocks for 4 per SM, at most {@link #ATT_MAX_SPLITS}).
     */
    private void attentionGeneral(CudaTensor q, CudaKvStorage cache, int layer, AttentionBatch batch,
                                  AttentionShape shape, CudaTensor o) {
        int rows = batch.numRows();
        int hd = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        int splits = attentionGeneralSplits(rows, shape);
        long partAcc = 0;
        long partMl = 0;
        if (splits > 1) {
            ensureAttentionWorkspace(attentionWorkspaceBytes(rows, shape, splits));
            partAcc = attentionWorkspace;
            partMl = attentionWorkspace + (long) rows * shape.numHeads() * splits * hd * 4;
        }
        args().p(q.ptr).i(q.cols()).p(cache.keys(layer)).p(cache.values(layer)).p(ints(batch.queryStarts()))
                .p(ints(batch.contextLens())).p(ints(batch.pageTableStarts())).p(ints(batch.pageTables()))
                .i(batch.numSequences()).i(cache.pageSize()).i(shape.numHeads()).i(shape.numKvHeads()).i(hd)
                .f(shape.scale()).i(shape.slidingWindow()).p(o.ptr).i(o.cols()).p(partAcc).p(partMl);
        // Dynamic shared memory: q [group][hd] f32, p [group][tile] f32, the value tile [tile][hd] bf16.
        int smem = group * hd * 4 + group * ATT_TILE * 4 + ATT_TILE * hd * 2;
        MemorySegment attentionKernel = kernels.function("attention_paged");
        if (smem > attentionSmemOptIn) {
            driver.funcSetAttribute(attentionKernel, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem);
            attentionSmemOptIn = smem;
        }
        launch(attentionKernel, "attention_paged", rows, shape.numKvHeads(), splits, 128, smem);
        mergeAttentionSplits(partAcc, partMl, rows, shape, splits, o);
    }

    /** Splits of the general kernel: enough (row, KV head) blocks for 4 per SM, at most {@link #ATT_MAX_SPLITS}. */
    private int attentionGeneralSplits(int rows, AttentionShape shape) {
        return Math.clamp(ceilDiv(4L * multiprocessors, Math.max(1L, (long) rows * shape.numKvHeads())), 1, ATT_MAX_SPLITS);
    }

    /** Partial results of {@code splits} splits: acc [rows][heads][splits][headDim] then (m, l) per split, float32. */
    private static long attentionWorkspaceBytes(int rows, AttentionShape shape, int splits) {
        return (long) rows * shape.numHeads() * splits * (shape.headDim() + 2) * 4;
    }

    /**
     * Sizes the attention workspace for every step of up to {@code maxRows} query rows of {@code shape}, decode or
     * not, so that such steps allocate nothing (a CUDA-graph capture must not allocate).
     */
    public void reserveAttentionWorkspace(int maxRows, AttentionShape shape) {
        enter();
        long bytes = 0;
        for (int rows = 1; rows <= maxRows; rows++) {
            int splits = Math.max(attentionDecodeSplits(rows, shape), attentionGeneralSplits(rows, shape));
            bytes = Math.max(bytes, attentionWorkspaceBytes(rows, shape, splits));
        }
        ensureAttentionWorkspace(bytes);
    }

    private void mergeAttentionSplits(long partAcc, long partMl, int rows, AttentionShape shape, int splits, CudaTensor o) {
        if (splits > 1) {
            args().p(partAcc).p(partMl).i(shape.numHeads()).i(shape.headDim()).i(splits).p(o.ptr).i(o.cols())
                    .launch("attention_merge", rows, shape.numHeads(), 1, Math.min(256, roundUp(shape.headDim(), 32)));
        }
    }

    /** Tests and benchmarks: route decode steps to the general kernel instead ({@code false}). */
    void useDecodeAttentionKernel(boolean on) {
        decodeAttentionKernel = on;
    }

    /** Benchmarks: the decode kernel's target of blocks per SM, which sets its number of splits. */
    void decodeAttentionBlocksPerSm(int blocksPerSm) {
        if (blocksPerSm < 1) {
            throw new IllegalArgumentException("blocks per SM must be positive, got " + blocksPerSm);
        }
        decodeBlocksPerSm = blocksPerSm;
    }

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    /**
     * Launch shape, from shapes only (CUDA graph rule 1): a fixed number of tiles (see
     * {@link #sgmvTileCount}), {@code ceil((v.cols - vCol) / 32)} rank blocks (v is as wide as the largest
     * rank the model accepts; blocks past a slot's rank exit), and the input split into {@code splits} parts
     * when tiles × rank blocks alone would leave SMs idle: a decode batch of 32 one-row tiles is 32 blocks on
     * 132 SMs, each streaming a whole A. Which tiles are real, their slots and ranks are read by the kernel.
     */
    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol) {
        enter();
        String op = "sgmvShrink";
        CudaTensor xs = tensor(x, "x");
        CudaTensor vs = tensor(v, "v");
        SlotTable table = checkShrink(op, xs, weights, segments, vs, vCol, vs.cols() - vCol);
        int tileCount = sgmvTileCount(xs.rows(), weights.slots());
        int rankBlocks = ceilDiv(vs.cols() - vCol, SHRINK_RANKS_PER_BLOCK);
        if (tileCount == 0 || rankBlocks == 0) {
            return;
        }
        int[] tiles = sgmvTiles(op, segments, tileCount);
        int in = xs.cols();
        int kChunk = shrinkChunkForBlocks(tileCount * rankBlocks, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = shrinkScratch(splits);
        long slotTable = table.device;
        int slots = weights.slots();
        long tileTable = ints(tiles);
        forkIfAsked();
        args().p(xs.ptr).i(xs.cols()).p(vs.ptr + 2L * vCol).i(vs.cols()).p(tileTable).p(slotTable).p(slotTable + 16L * slots)
                .i(in).i(kChunk).p(scratch[0]).p(scratch[1])
                .launch(rowTiles(segments, tileCount) ? "sgmv_shrink_row" : "sgmv_shrink", tileCount, rankBlocks, splits,
                        THREADS);
    }

    /**
     * One launch for the whole group: grid (tiles, rank blocks of {@code w = v.cols / n}, splits · n), the
     * split count chosen for all n projections' blocks together; projection m's blocks read its own slot
     * table and count in their own split-K counters. Up to {@link #SGMV_GROUP_MAX} projections (q|k|v).
     */
    @Override
    public void sgmvShrinkGroup(Tensor x, List<LoraWeights> group, Segments segments, Tensor v) {
        enter();
        String op = "sgmvShrinkGroup";
        int n = group.size();
        if (!(n >= 1 && n <= SGMV_GROUP_MAX)) {
            throw ShapeChecks.fail(op, n + " projections; the CUDA kernel takes 1 to " + SGMV_GROUP_MAX);
        }
        CudaTensor xs = tensor(x, "x");
        CudaTensor vs = tensor(v, "v");
        int w = vs.cols() / n;
        int slots = sameSlots(op, group);
        long[] tables = new long[SGMV_GROUP_MAX];
        for (int m = 0; m < n; m++) {
            LoraWeights weights = group.get(m);
            tables[m] = checkShrink(op, xs, weights, segments, vs, m * w, w).device;
        }
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            tables[m] = tables[0]; // padding, never read
        }
        int tileCount = sgmvTileCount(xs.rows(), slots);
        if (tileCount == 0 || w == 0) {
            return;
        }
        int[] tiles = sgmvTiles(op, segments, tileCount);
        int in = xs.cols();
        int rankBlocks = ceilDiv(w, SHRINK_RANKS_PER_BLOCK);
        int kChunk = shrinkChunkForBlocks(n * tileCount * rankBlocks, in);
        int splits = ceilDiv(in, kChunk);
        long[] scratch = shrinkScratch(splits);
        long tileTable = ints(tiles);
        forkIfAsked();
        args().p(xs.ptr).i(xs.cols()).p(vs.ptr).i(vs.cols()).i(w).p(tileTable).p(tables[0]).p(tables[1]).p(tables[2])
                .i(slots).i(in).i(kChunk).i(splits).p(scratch[0]).p(scratch[1])
                .launch(rowTiles(segments, tileCount) ? "sgmv_shrink_group_row" : "sgmv_shrink_group", tileCount,
                        rankBlocks, splits * n, THREADS);
    }

    /**
     * The projection and its LoRA add-on. Decode steps of more than {@value #FUSED_MIN_TILES} rows on sm_90+ run
     * the GEMM, then the fused cluster kernel ({@link #sgmvFusedRows}; {@code -Dpunica.cuda.fusedLora=false}
     * turns it off). Otherwise the shrink overlaps the GEMM: both only read x, so the shrink is launched on a
     * side stream forked from the main one (after everything enqueued so far) while cuBLAS runs the GEMM on
     * the main stream; the main stream then waits for the side stream and runs the expand, which adds into
     * the GEMM's output. The kernels and their order on each buffer are those of the default, so the result
     * is the same bit for bit; the shrink's launch latency and its split-K tail hide behind the GEMM. In a
     * step graph the fork and join become two branches of the graph. {@code -Dpunica.cuda.loraOverlap=false}
     * runs everything on the main stream.
     */
    @Override
    public void matmulLora(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group, Segments segments,
                           Tensor v, int[] cols) {
        enter();
        if (fusedLora && group.size() <= SGMV_GROUP_MAX && v.cols() / group.size() <= FUSED_MAX_RANK) {
            int tileCount = sgmvTileCount(x.rows(), group.getFirst().slots());
            if (tileCount > fusedMinTiles && rowTiles(segments, tileCount)) {
                matmul(x, w, bias, out);
                sgmvFusedRows(tensor(x, "x"), group, segments, tensor(v, "v"), tensor(out, "out"), cols);
                return;
            }
        }
        if (!loraOverlap) {
            Backend.super.matmulLora(x, w, bias, out, group, segments, v, cols);
            return;
        }
        try {
            shrinkOnSide = true;
            if (group.size() == 1) {
                sgmvShrink(x, group.getFirst(), segments, v, 0);
            } else {
                sgmvShrinkGroup(x, group, segments, v);
            }
            shrinkOnSide = false;
            launchStream = stream;
            matmul(x, w, bias, out);
        } finally {
            shrinkOnSide = false;
            joinSide();
        }
        if (group.size() == 1) {
            sgmvExpand(v, 0, group.getFirst(), segments, out, cols[0]);
        } else {
            sgmvExpandGroup(v, group, segments, out, cols);
        }
    }

    /**
     * The LoRA add-on of a decode step (one-row tiles) in one launch: a cluster of {@value #FUSED_CLUSTER}
     * blocks per (row, projection) splits the shrink's inputs, adds the partial sums through distributed
     * shared memory, and splits the expand's outputs (sgmv.cu, {@code sgmv_fused_row_group}). The checks are
     * those of {@link #sgmvShrinkGroup} and {@link #sgmvExpandGroup}; v, whose width per projection bounds the
     * rank as there, is not written.
     */
    private void sgmvFusedRows(CudaTensor xs, List<LoraWeights> group, Segments segments, CudaTensor vs, CudaTensor ys,
                               int[] yCols) {
        String op = "matmulLora";
        int n = group.size();
        if (yCols.length != n) {
            throw ShapeChecks.fail(op, yCols.length + " output columns for " + n + " projections");
        }
        int w = vs.cols() / n;
        int slots = sameSlots(op, group);
        SlotTable[] tables = new SlotTable[n];
        for (int m = 0; m < n; m++) {
            LoraWeights weights = group.get(m);
            tables[m] = checkShrink(op, xs, weights, segments, vs, m * w, w);
            checkExpand(op, vs, m * w, weights, segments, ys, yCols[m]);
        }
        int[] outs = groupOutFeatures(op, tables, ys, yCols);
        int tileCount = sgmvTileCount(xs.rows(), slots);
        int[] tiles = sgmvTiles(op, segments, tileCount);
        long t0 = tables[0].device;
        long t1 = n > 1 ? tables[1].device : t0;
        long t2 = n > 2 ? tables[2].device : t0;
        int[] cols = Arrays.copyOf(yCols, SGMV_GROUP_MAX);
        args().p(xs.ptr).i(xs.cols()).p(ys.ptr).i(ys.cols()).p(ints(tiles)).p(t0).p(t1).p(t2).i(slots).i(xs.cols())
                .i(cols[0]).i(cols[1]).i(cols[2]).i(outs[0]).i(outs[1]).i(outs[2])
                .launch("sgmv_fused_row_group", FUSED_CLUSTER, tileCount, n, THREADS);
        fusedLaunches++;
    }

    /** For tests: decode batches of more than {@code tiles} tiles take the fused kernel (default {@value #FUSED_MIN_TILES}). */
    void setFusedMinTiles(int tiles) {
        fusedMinTiles = tiles;
    }

    /** For tests: how many times {@link #matmulLora} took the fused kernel (host calls, replays included). */
    long fusedLaunches() {
        return fusedLaunches;
    }

    /** Whether {@link #matmulLora} runs decode steps' LoRA with the fused cluster kernel (sm_90+; on by default). */
    void setFusedLora(boolean on) {
        fusedLora = on && ccMajor >= 9;
    }

    /** Whether {@link #matmulLora} overlaps the shrink with the GEMM (on by default). */
    void setLoraOverlap(boolean on) {
        loraOverlap = on;
    }

    /**
     * Inside {@link #matmulLora}: makes the next launch go to the side stream, which first waits for all
     * work enqueued on the main stream so far (the input's producer, the index-array and slot-table copies).
     * On replay nothing is enqueued; the launch record notes the stream, so a replay compares it too.
     */
    private void forkIfAsked() {
        if (!shrinkOnSide) {
            return;
        }
        if (mode != Mode.REPLAY) {
            driver.eventRecord(forkEvent, stream);
            driver.streamWaitEvent(sideStream, forkEvent);
        }
        sideForked = true;
        launchStream = sideStream;
    }

    /** The main stream waits for the side stream's work; nothing to do when nothing was forked. */
    private void joinSide() {
        if (!sideForked) {
            return;
        }
        sideForked = false;
        launchStream = stream;
        if (mode != Mode.REPLAY) {
            driver.eventRecord(joinEvent, sideStream);
            driver.streamWaitEvent(stream, joinEvent);
        }
    }

    /**
     * Segments, the projection's slot table (A shapes), x's width against A's, and v's columns
     * {@code [vCol, vCol + width)} against the rank of every slot a segment uses; returns the table.
     */
    private SlotTable checkShrink(String op, CudaTensor xs, LoraWeights weights, Segments segments, CudaTensor vs,
                                  int vCol, int width) {
        ShapeChecks.checkSegments(op, segments, weights, Math.min(xs.rows(), vs.rows()));
        if (!(vCol >= 0 && vCol <= vs.cols())) {
            throw ShapeChecks.fail(op, "column " + vCol + " is outside v " + vs);
        }
        SlotTable t = slotTable(op, weights);
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

    /** (partials, arrival counters) of the split-K shrink, or zeros for one split (the kernel writes v). */
    private long[] shrinkScratch(int splits) {
        if (splits == 1) {
            return new long[2];
        }
        int target = SHRINK_BLOCKS_PER_SM * multiprocessors;
        ensureSgmvWorkspace(target);
        return new long[] {sgmvWorkspace, sgmvWorkspace + 2L * target * SHRINK_PARTIAL_FLOATS * 4};
    }

    /** Grid: the fixed tile count × {@code ceil(out / 256)} output blocks, {@code out} being B's row count. */
    @Override
    public void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        enter();
        String op = "sgmvExpand";
        CudaTensor vs = tensor(v, "v");
        CudaTensor ys = tensor(y, "y");
        SlotTable table = checkExpand(op, vs, vCol, weights, segments, ys, yCol);
        int outFeatures = sgmvOutFeatures(op, table, ys, yCol, ys.cols());
        int tileCount = sgmvTileCount(vs.rows(), weights.slots());
        if (tileCount == 0 || outFeatures == 0) {
            return;
        }
        int[] tiles = sgmvTiles(op, segments, tileCount);
        long slotTable = table.device;
        int slots = weights.slots();
        args().p(vs.ptr + 2L * vCol).i(vs.cols()).p(ys.ptr).i(ys.cols()).i(yCol).p(ints(tiles)).p(slotTable + 8L * slots)
                .p(slotTable + 16L * slots).p(slotTable + 20L * slots).i(outFeatures)
                .launch("sgmv_expand", tileCount, ceilDiv(outFeatures, THREADS), 1, THREADS);
    }

    /**
     * One launch for the whole group: grid (tiles, Σ ceil(out_m / 256)), projection m owning a run of output
     * blocks. out_m is B's row count; for a projection with no slot loaded (its blocks all exit) it is the
     * distance to the next projection's column, or to y's end, so that the grid does not change when an
     * adapter arrives (it is that distance for q|k|v and gate|up).
     */
    @Override
    public void sgmvExpandGroup(Tensor v, List<LoraWeights> group, Segments segments, Tensor y, int[] yCols) {
        enter();
        String op = "sgmvExpandGroup";
        int n = group.size();
        if (!(n >= 1 && n <= SGMV_GROUP_MAX)) {
            throw ShapeChecks.fail(op, n + " projections; the CUDA kernel takes 1 to " + SGMV_GROUP_MAX);
        }
        if (yCols.length != n) {
            throw ShapeChecks.fail(op, yCols.length + " output columns for " + n + " projections");
        }
        CudaTensor vs = tensor(v, "v");
        CudaTensor ys = tensor(y, "y");
        int w = vs.cols() / n;
        int slots = sameSlots(op, group);
        int[] starts = new int[SGMV_GROUP_MAX];
        int[] cols = new int[SGMV_GROUP_MAX];
        long[] tables = new long[SGMV_GROUP_MAX];
        SlotTable[] checked = new SlotTable[n];
        int blocks = 0;
        for (int m = 0; m < n; m++) {
            LoraWeights weights = group.get(m);
            SlotTable table = checkExpand(op, vs, m * w, weights, segments, ys, yCols[m]);
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
            blocks += ceilDiv(outs[m], THREADS);
        }
        for (int m = n; m < SGMV_GROUP_MAX; m++) {
            starts[m] = blocks;
            tables[m] = tables[0]; // padding, never read
        }
        int tileCount = sgmvTileCount(vs.rows(), slots);
        if (tileCount == 0 || blocks == 0) {
            return;
        }
        int[] tiles = sgmvTiles(op, segments, tileCount);
        args().p(vs.ptr).i(vs.cols()).i(w).p(ys.ptr).i(ys.cols()).p(ints(tiles)).p(tables[0]).p(tables[1]).p(tables[2])
                .i(slots).i(cols[0]).i(cols[1]).i(cols[2]).i(outs[0]).i(outs[1]).i(outs[2]).i(starts[1]).i(starts[2])
                .launch("sgmv_expand_group", tileCount, blocks, 1, THREADS);
    }

    /**
     * Segments, the projection's slot table (B shapes), and for every slot a segment uses: v's columns from
     * {@code vCol} and y's from {@code yCol} hold its rank and B's outputs, the rank within the kernel's
     * limit; returns the table.
     */
    private SlotTable checkExpand(String op, CudaTensor vs, int vCol, LoraWeights weights, Segments segments, CudaTensor ys,
                                  int yCol) {
        ShapeChecks.checkSegments(op, segments, weights, Math.min(vs.rows(), ys.rows()));
        SlotTable t = slotTable(op, weights);
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
                    throw ShapeChecks.fail(op, "rank " + rank + " of slot " + s + " is above the CUDA kernel's " + EXPAND_MAX_RANK);
                }
            }
        }
        return t;
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
    int shrinkChunkForBlocks(int blocks, int in) {
        int target = SHRINK_BLOCKS_PER_SM * multiprocessors;
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
                throw ShapeChecks.fail(op, "projection " + m + " has " + group.get(m).slots() + " slots, projection 0 " + slots);
            }
        }
        return slots;
    }

    /**
     * Output columns of each projection of a group (padded to {@link #SGMV_GROUP_MAX} with zeros): B's row
     * count, or, for a projection with no slot loaded, the distance to the next projection's column or to y's
     * end, so that a launch's grid does not change when an adapter arrives.
     */
    private static int[] groupOutFeatures(String op, SlotTable[] tables, CudaTensor ys, int[] yCols) {
        int[] outs = new int[SGMV_GROUP_MAX];
        for (int m = 0; m < tables.length; m++) {
            int end = ys.cols();
            for (int c : yCols) {
                if (c > yCols[m] && c < end) {
                    end = c;
                }
            }
            outs[m] = sgmvOutFeatures(op, tables[m], ys, yCols[m], end);
        }
        return outs;
    }

    /**
     * Rows of B, the same for every occupied slot (it is the projection's output size, a shape of the
     * model); {@code end - yCol} while no slot is occupied (every tile then exits).
     */
    private static int sgmvOutFeatures(String op, SlotTable table, CudaTensor y, int yCol, int end) {
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
     * How many tiles of at most 8 rows an SGMV launch has for {@code rows} rows and {@code slots} adapter
     * slots: a bound on Σ⌈len/8⌉ over the segments that name a slot, from shapes only. Each slot has at
     * most one segment (rows are grouped by adapter), so Σ⌈len/8⌉ ≤ Σ(len + 7)/8 ≤ (rows + 7·slots)/8, and
     * every tile has a row, so it is at most rows: a decode batch of 32 rows gets 32 tiles, a prefill chunk
     * of 2048 rows with 64 slots 312.
     */
    static int sgmvTileCount(int rows, int slots) {
        return (int) Math.min(rows, ((long) rows + (long) (SGMV_TILE_ROWS - 1) * slots) / SGMV_TILE_ROWS);
    }

    /**
     * (first row, row count, slot) for every tile of at most 8 rows of every segment that names a slot,
     * then (0, 0, 0) up to {@code tileCount}: empty tiles, whose blocks exit. A slot that does not adapt
     * this projection has rank 0 in the slot table and its blocks exit too, so the table depends on the
     * segments alone and one array serves every projection of a step (graph rule 3).
     */
    private int[] sgmvTiles(String op, Segments segments, int tileCount) {
        for (SgmvTiles t : recentTiles) {
            if (t.segments() == segments && t.count() == tileCount) {
                return t.tiles();
            }
        }
        int[] tiles = new int[3 * tileCount];
        int height = rowTiles(segments, tileCount) ? 1 : SGMV_TILE_ROWS;
        int k = 0;
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (slot < 0) {
                continue;
            }
            int end = segments.starts()[i + 1];
            for (int r = segments.starts()[i]; r < end; r += height) {
                if (k == tiles.length) {
                    throw ShapeChecks.fail(op, "segments " + Arrays.toString(segments.slots()) + " over "
                            + segments.rows() + " rows need more than " + tileCount + " tiles of " + SGMV_TILE_ROWS
                            + " rows: a slot has several segments; group each adapter's rows into one segment");
                }
                tiles[k++] = r;
                tiles[k++] = Math.min(height, end - r);
                tiles[k++] = slot;
            }
        }
        recentTiles.addFirst(new SgmvTiles(segments, tileCount, tiles));
        if (recentTiles.size() > 8) {
            recentTiles.removeLast();
        }
        return tiles;
    }

    /**
     * Whether {@link #sgmvTiles} cuts the segments into one-row tiles, which the shrink then runs with its
     * one-row kernels: decode-sized steps with room for a tile per row. A segment of many rows (one adapter
     * shared by the batch) then spreads over as many blocks as distinct adapters would, its weights re-read
     * from L2 rather than streamed by a few blocks.
     */
    private static boolean rowTiles(Segments segments, int tileCount) {
        return segments.rows() <= tileCount && tileCount <= SGMV_ROW_TILES_UP_TO;
    }

    /**
     * The split-K scratch, allocated once at its largest size: {@code 2 · target} blocks' partial sums,
     * then {@code target} arrival counters, zeroed here; each launch leaves them zero again.
     */
    private void ensureSgmvWorkspace(int target) {
        if (sgmvWorkspace != 0) {
            return;
        }
        long partialBytes = 2L * target * SHRINK_PARTIAL_FLOATS * 4;
        sgmvWorkspace = alloc(partialBytes + 4L * target);
        driver.memsetD32Async(sgmvWorkspace + partialBytes, 0, target, stream);
    }

    /**
     * The device table of this projection's slots, checked and re-uploaded (in stream order) when a slot
     * changed: every present slot's A and B were made by this backend and not freed, A is
     * {@code [rank, in]} and B {@code [out, rank]} with one {@code in} and one {@code out} for all slots.
     */
    private SlotTable slotTable(String op, LoraWeights weights) {
        int slots = weights.slots();
        SlotTable t = slotTables.get(weights);
        if (t != null && t.holds(weights, freedTensors)) {
            return t;
        }
        long[] a = new long[slots];
        long[] b = new long[slots];
        int[] rank = new int[slots];
        float[] scale = new float[slots];
        int in = -1;
        int out = -1;
        for (int s = 0; s < slots; s++) {
            if (!weights.present(s)) {
                continue;
            }
            CudaTensor at = tensor(weights.a()[s], "lora A of slot " + s);
            if (weights.b()[s] == null) {
                throw ShapeChecks.fail(op, "lora B of slot " + s + " is missing while A is present");
            }
            CudaTensor bt = tensor(weights.b()[s], "lora B of slot " + s);
            int r = weights.rank()[s];
            if (!(at.rows() == r && bt.cols() == r)) {
                throw ShapeChecks.fail(op, "lora A " + at + " and B " + bt + " of slot " + s + " must be [rank " + r
                        + ", in] and [out, rank " + r + "]");
            }
            if (in >= 0 && at.cols() != in) {
                throw ShapeChecks.fail(op, "lora A of slot " + s + " " + at + " has " + at.cols() + " inputs, other slots " + in);
            }
            if (out >= 0 && bt.rows() != out) {
                throw ShapeChecks.fail(op, "lora B of slot " + s + " " + bt + " has " + bt.rows() + " outputs, other slots " + out);
            }
            in = at.cols();
            out = bt.rows();
            a[s] = at.ptr;
            b[s] = bt.ptr;
            rank[s] = r;
            scale[s] = weights.scale()[s];
        }
        if (t == null) {
            t = new SlotTable(alloc(24L * slots), slots);
            slotTables.put(weights, t);
        }
        for (int s = 0; s < slots; s++) {
            boolean present = weights.present(s);
            t.a[s] = present ? weights.a()[s] : null;
            t.b[s] = present ? weights.b()[s] : null;
            t.rank[s] = rank[s];
            t.scale[s] = scale[s];
        }
        t.inFeatures = in;
        t.outFeatures = out;
        t.freedAt = freedTensors;
        long bytes = 24L * slots;
        long off = ringAlloc(bytes);
        MemorySegment.copy(a, 0, ringHost, JAVA_LONG, off, slots);
        MemorySegment.copy(b, 0, ringHost, JAVA_LONG, off + 8L * slots, slots);
        MemorySegment.copy(rank, 0, ringHost, JAVA_INT, off + 16L * slots, slots);
        MemorySegment.copy(scale, 0, ringHost, JAVA_FLOAT, off + 20L * slots, slots);
        driver.copyHtoDAsync(t.device, ringHost.asSlice(off), bytes, stream);
        return t;
    }

    // ---- sampling -------------------------------------------------------------------------------

    @Override
    public boolean supportsSampling() {
        return true;
    }

    /**
     * sampling.cu's {@code sample_rows}, one block per row; only each row's token, and the log-probabilities
     * it asked for, come back (waits for the stream).
     */
    @Override
    public List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        enter();
        CudaTensor l = tensor(logits, "logits");
        ShapeChecks.checkSampling(logits, batch);
        int rows = l.rows();
        int vocab = l.cols();
        if (rows == 0) {
            return List.of();
        }
        long meta = ints(samplingMeta(batch));
        ensureSamplingWorkspace((long) rows * vocab * 4);
        long outBytes = (long) rows * SAMPLE_OUT_INTS * 4;
        long out = ringAlloc(outBytes);
        MemorySegment kernel = kernels.function("sample_rows");
        if (!samplingSmemOptIn) {
            driver.funcSetAttribute(kernel, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, SAMPLE_SMEM);
            samplingSmemOptIn = true;
        }
        args().p(l.ptr).i(vocab).p(meta).p(meta + 4L * rows * SAMPLE_ROW_INTS).p(samplingWorkspace).p(ringDevice + out);
        launch(kernel, "sample_rows", rows, 1, 1, SAMPLE_THREADS, SAMPLE_SMEM);
        driver.copyDtoHAsync(ringHost.asSlice(out), ringDevice + out, outBytes, stream);
        driver.streamSynchronize(stream);
        int[] values = new int[rows * SAMPLE_OUT_INTS];
        MemorySegment.copy(ringHost, JAVA_INT, out, values, 0, values.length);
        List<SampledToken> tokens = new ArrayList<>(rows);
        for (int r = 0; r < rows; r++) {
            int at = r * SAMPLE_OUT_INTS;
            if (batch.row(r).logprobs() < 0) {
                tokens.add(SampledToken.of(values[at]));
                continue;
            }
            int n = values[at + 2];
            int[] topTokens = Arrays.copyOfRange(values, at + 3, at + 3 + n);
            float[] topLogprobs = new float[n];
            for (int i = 0; i < n; i++) {
                topLogprobs[i] = Float.intBitsToFloat(values[at + 3 + SamplingRow.MAX_LOGPROBS + i]);
            }
            tokens.add(new SampledToken(values[at], Float.intBitsToFloat(values[at + 1]), topTokens, topLogprobs));
        }
        return tokens;
    }

    /**
     * The kernel's metadata: per row (ints, floats as bits) temperature, topK, topP, minP, repetition,
     * presence and frequency penalties, the uniform draw's low and high halves, logprobs, and the row's
     * range of penalty pairs; then the (token, count) pairs.
     */
    private static int[] samplingMeta(SamplingBatch batch) {
        int rows = batch.size();
        int pairs = batch.penaltyTokens().length;
        int[] meta = new int[rows * SAMPLE_ROW_INTS + 2 * pairs];
        for (int r = 0; r < rows; r++) {
            SamplingRow p = batch.row(r);
            long uniform = Double.doubleToRawLongBits(p.uniform());
            int at = r * SAMPLE_ROW_INTS;
            meta[at] = Float.floatToRawIntBits(p.temperature());
            meta[at + 1] = p.topK();
            meta[at + 2] = Float.floatToRawIntBits(p.topP());
            meta[at + 3] = Float.floatToRawIntBits(p.minP());
            meta[at + 4] = Float.floatToRawIntBits(p.repetitionPenalty());
            meta[at + 5] = Float.floatToRawIntBits(p.presencePenalty());
            meta[at + 6] = Float.floatToRawIntBits(p.frequencyPenalty());
            meta[at + 7] = (int) uniform;
            meta[at + 8] = (int) (uniform >>> 32);
            meta[at + 9] = p.logprobs();
            meta[at + 10] = batch.penaltyStarts()[r];
            meta[at + 11] = batch.penaltyStarts()[r + 1];
        }
        int base = rows * SAMPLE_ROW_INTS;
        for (int i = 0; i < pairs; i++) {
            meta[base + 2 * i] = batch.penaltyTokens()[i];
            meta[base + 2 * i + 1] = batch.penaltyCounts()[i];
        }
        return meta;
    }

    private void ensureSamplingWorkspace(long bytes) {
        if (bytes <= samplingWorkspaceBytes) {
            return;
        }
        if (samplingWorkspace != 0) {
            driver.streamSynchronize(stream);
            release(samplingWorkspace);
        }
        samplingWorkspaceBytes = Math.max(bytes, 2 * samplingWorkspaceBytes);
        samplingWorkspace = alloc(samplingWorkspaceBytes);
    }

    // ---- plumbing -------------------------------------------------------------------------------

    private void enter() {
        if (closed) {
            throw new IllegalStateException("this CUDA backend is closed");
        }
        Long current = threadContext.get();
        if (current == null || current != context.address()) {
            driver.setCurrent(context);
            threadContext.set(context.address());
        }
    }

    /**
     * A device block of at least {@code bytes}: a freed one of the same size if there is one, else a new
     * one; when the device is full, the free lists are given back to the driver and the allocation tried
     * again. Reuse needs no waiting: work on the compute stream is ordered after the work that used the
     * block before, and a copy on the copy stream first waits for the compute stream (see
     * {@link #loadWeightsAsync}).
     */
    private long alloc(long bytes) {
        requireNotCapturing("a device allocation");
        long size = roundUp(Math.max(bytes, 1), BLOCK_ALIGN);
        ArrayDeque<Long> free = freeBlocks.get(size);
        long p;
        if (free != null && !free.isEmpty()) {
            p = free.pop();
            freeBlockBytes -= size;
            reusedBlocks++;
        } else {
            try {
                p = driver.memAlloc(size);
            } catch (CudaException e) {
                if (freeBlockBytes == 0) {
                    throw e;
                }
                log.info("device memory full: giving {} MiB of freed blocks back to the driver", freeBlockBytes >> 20);
                trimFreeBlocks();
                p = driver.memAlloc(size);
            }
            driverAllocations++;
        }
        liveAllocations.put(p, size);
        return p;
    }

    /** Puts a block on the free list of its size. */
    private void release(long ptr) {
        Long size = liveAllocations.remove(ptr);
        if (size == null) {
            throw new IllegalStateException("0x" + Long.toHexString(ptr) + " is not a live allocation of this backend");
        }
        freeBlocks.computeIfAbsent(size, k -> new ArrayDeque<>()).push(ptr);
        freeBlockBytes += size;
    }

    /** Frees every block on the free lists (after the work that may still use them). */
    private void trimFreeBlocks() {
        driver.streamSynchronize(stream);
        for (ArrayDeque<Long> blocks : freeBlocks.values()) {
            for (long p : blocks) {
                driver.memFree(p);
            }
        }
        freeBlocks.clear();
        freeBlockBytes = 0;
    }

    /** Bytes of freed device blocks kept for reuse. */
    long freeBlockBytes() {
        return freeBlockBytes;
    }

    /** How many allocations were served from the free lists. */
    long reusedBlocks() {
        return reusedBlocks;
    }

    /** How many allocations went to cuMemAlloc. */
    long driverAllocations() {
        return driverAllocations;
    }

    /** True when all work enqueued on the compute stream so far has completed (does not wait). */
    boolean computeStreamIdle() {
        enter();
        MemorySegment e = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        try {
            driver.eventRecord(e, stream);
            return driver.eventQuery(e);
        } finally {
            driver.eventDestroy(e);
        }
    }

    /**
     * Grows the attention split workspace to at least {@code bytes} (sized from shapes only). The old buffer
     * is kept until {@link #close()}: work already enqueued, or recorded in a CUDA graph, may still use it.
     */
    private void ensureAttentionWorkspace(long bytes) {
        if (bytes <= attentionWorkspaceBytes) {
            return;
        }
        requireNotCapturing("growing the attention workspace");
        // The old buffer stays allocated until close(): kernels in flight or recorded step graphs may use it.
        if (attentionWorkspace != 0) {
            retiredAttentionWorkspaces.add(attentionWorkspace);
        }
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
            LaunchRecord launch = new LaunchRecord(function.address(), gx, gy, gz, threads, smem,
                    launchStream == sideStream, words);
            if (mode == Mode.REPLAY) {
                expectRecorded(launch, name);
                return;
            }
            currentGraph.launches.add(launch);
        }
        boolean profiled = profiler != null && mode != Mode.CAPTURE;
        if (profiled) {
            profiler.begin(name, launchStream);
        }
        driver.launchKernel(function, gx, gy, gz, threads, 1, 1, smem, launchStream, launchPointers, name);
        if (profiled) {
            profiler.end(launchStream);
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
                rerecorded.remove(key);
                return;
            }
            stepGraphs.remove(key);
            discard(graph);
            // A workspace that grew since the recording, say, is a one-off; a key that never replays is not.
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
            log.info("step graph not replayed, recording it again: {}", e.getMessage());
            return false;
        } finally {
            mode = Mode.EAGER;
            currentGraph = null;
            stepUploads.clear();
        }
        driver.copyHtoDAsync(g.device, g.host, g.used, stream);
        driver.eventRecord(g.uploaded, stream);
        if (profiler != null) {
            profiler.begin("step graph", stream);
        }
        driver.graphLaunch(g.exec, stream);
        if (profiler != null) {
            profiler.end(stream);
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
        for (long workspace : retiredAttentionWorkspaces) {
            release(workspace);
        }
        retiredAttentionWorkspaces.clear();
        if (uploader != null) {
            uploader.close();
        }
        for (AsyncWeights u : openUploads) {
            u.destroyEvents();
        }
        openUploads.clear();
        for (Iterator<Long> it = liveAllocations.keySet().iterator(); it.hasNext(); ) {
            driver.memFree(it.next());
            it.remove();
        }
        trimFreeBlocks();
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
        driver.eventDestroy(forkEvent);
        driver.eventDestroy(joinEvent);
        driver.streamDestroy(sideStream);
        driver.streamDestroy(stream);
        driver.primaryContextRelease(device);
        arena.close();
    }
}
