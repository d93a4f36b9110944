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
import ai.punica.backend.Tensor;
import ai.punica.backend.WeightUpload;
import ai.punica.model.TensorData;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The CUDA backend: activations, weights and the paged KV cache in bf16 on one device; float32
 * accumulation everywhere. Dense projections go to cuBLAS, everything else to our kernels
 * ({@code src/main/cuda}). All work is enqueued on one stream; {@link #download} waits for it.
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
 */
public final class CudaBackend implements Backend {
    private static final Logger log = LoggerFactory.getLogger(CudaBackend.class);

    private static final long RING_BYTES = 64L << 20;
    private static final long CUBLAS_WORKSPACE_BYTES = 32L << 20;
    private static final int THREADS = 256;
    private static final int SGMV_TILE_ROWS = 8;
    private static final int SHRINK_RANKS_PER_BLOCK = 32;
    /** A split-K shrink block covers at least this many inputs (fewer would spend more on the reduction). */
    private static final int SHRINK_MIN_SPLIT = 512;
    /** Split-K aims at this many shrink blocks per SM (a decode batch has too few tiles to fill the GPU). */
    private static final int SHRINK_BLOCKS_PER_SM = 4;
    /** Fp32 partial sums one shrink block leaves for the split-K reduction: 32 ranks × 8 rows. */
    private static final int SHRINK_PARTIAL_FLOATS = 32 * 8;
    /** Device blocks are sized, and kept on the free lists, in multiples of this. */
    private static final long BLOCK_ALIGN = 256;
    private static final int EXPAND_MAX_RANK = 256;
    private static final int ATT_TILE = 128;
    private static final int ATT_MAX_GROUP = 16;
    private static final int ATT_MAX_HEAD_DIM = 256;

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
        requireSameShape(xs, o);
        if (w.elements() != xs.cols()) {
            throw new IllegalArgumentException("rmsNorm weight " + w + " does not match rows of " + xs.cols());
        }
        if (xs.rows() == 0) {
            return;
        }
        int threads = xs.cols() >= 4096 ? 512 : 256;
        args().p(xs.ptr).p(w.ptr).p(o.ptr).i(xs.cols()).f(eps).launch("rms_norm", xs.rows(), 1, 1, threads);
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
        if (profiler != null) {
            profiler.begin(xs.rows() == 1 ? "gemm(1 row)" : xs.rows() <= 64 ? "gemm(2-64 rows)" : "gemm(>64 rows)");
        }
        cublas.gemmBf16(xs.ptr, ws.ptr, o.ptr, xs.rows(), xs.cols(), ws.rows(), o.cols(), Cublas.CUDA_R_16BF);
        if (profiler != null) {
            profiler.end();
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
        requireRows(xs, positions.length, "x");
        if (numHeads * headDim > xs.cols() || rope.halfDim() * 2 != headDim) {
            throw new IllegalArgumentException("rope over " + numHeads + " heads of " + headDim + " with " + rope.halfDim()
                    + " frequencies does not fit rows of " + xs.cols());
        }
        if (positions.length == 0) {
            return;
        }
        long invFreq = ropeTables.computeIfAbsent(rope, r -> {
            long dev = alloc(r.halfDim() * 4L);
            long off = ringAlloc(r.halfDim() * 4L);
            MemorySegment.copy(r.invFreq(), 0, ringHost, JAVA_FLOAT, off, r.halfDim());
            driver.copyHtoDAsync(dev, ringHost.asSlice(off), r.halfDim() * 4L, stream);
            return dev;
        });
        args().p(xs.ptr).i(xs.cols()).p(ints(positions)).p(invFreq).i(numHeads).i(headDim).f(rope.attentionFactor())
                .launch("rope", positions.length, 1, 1, Math.min(1024, Math.max(32, roundUp(numHeads * headDim / 2, 32))));
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
        if (slotMapping.length == 0) {
            return;
        }
        args().p(q.ptr).i(q.cols()).i(kCol).i(vCol).p(ints(slotMapping)).p(cache.keys(layer)).p(cache.values(layer))
                .i(kvCols).launch("append_kv", slotMapping.length, 1, 1, Math.min(256, roundUp(kvCols, 32)));
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
        if (profiler != null) {
            profiler.begin("attention_paged");
        }
        driver.launchKernel(attentionKernel, rows, shape.numKvHeads(), splits, 128, 1, 1, smem, stream, launchPointers,
                "attention_paged");
        if (profiler != null) {
            profiler.end();
        }
        if (splits > 1) {
            args().p(partAcc).p(partMl).i(shape.numHeads()).i(hd).i(splits).p(o.ptr).i(o.cols())
                    .launch("attention_merge", rows, shape.numHeads(), 1, Math.min(256, roundUp(hd, 32)));
        }
    }

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    /**
     * Launch shape, from shapes only (CUDA graph rule 1): a fixed number of tiles (see
     * {@link #sgmvTileCount}), {@code ceil(v.cols / 32)} rank blocks (v is as wide as the largest rank the
     * model accepts; blocks past a slot's rank exit), and the input split into {@code splits} parts when
     * tiles × rank blocks alone would leave SMs idle: a decode batch of 32 one-row tiles is 32 blocks on
     * 132 SMs, each streaming a whole A. Which tiles are real, their slots and ranks are read by the kernel.
     */
    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v) {
        enter();
        String op = "sgmvShrink";
        CudaTensor xs = tensor(x, "x");
        CudaTensor vs = tensor(v, "v");
        ShapeChecks.checkSegments(op, segments, weights, Math.min(xs.rows(), vs.rows()));
        for (int s : segments.slots()) {
            if (weights.present(s)) {
                ShapeChecks.checkLoraA(op, weights, s, xs.cols());
                tensor(weights.a()[s], "lora A of slot " + s);
                ShapeChecks.require(weights.rank()[s] <= vs.cols(), op,
                        "v " + vs + " is narrower than rank " + weights.rank()[s] + " of slot " + s);
            }
        }
        int tileCount = sgmvTileCount(xs.rows(), weights.slots());
        if (tileCount == 0) {
            return;
        }
        int[] tiles = sgmvTiles(op, segments, tileCount);
        int in = xs.cols();
        int rankBlocks = ceilDiv(vs.cols(), SHRINK_RANKS_PER_BLOCK);
        int kChunk = shrinkChunk(tileCount, vs.cols(), in);
        int splits = ceilDiv(in, kChunk);
        int target = SHRINK_BLOCKS_PER_SM * multiprocessors;
        long partial = 0;
        long arrivals = 0;
        if (splits > 1) {
            ensureSgmvWorkspace(target);
            partial = sgmvWorkspace;
            arrivals = sgmvWorkspace + 2L * target * SHRINK_PARTIAL_FLOATS * 4;
        }
        long table = slotTable(weights);
        int slots = weights.slots();
        args().p(xs.ptr).i(xs.cols()).p(vs.ptr).i(vs.cols()).p(ints(tiles)).p(table).p(table + 16L * slots)
                .i(in).i(kChunk).p(partial).p(arrivals).launch("sgmv_shrink", tileCount, rankBlocks, splits, THREADS);
    }

    /** Grid: the fixed tile count × {@code ceil(out / 256)} output blocks, {@code out} being B's row count. */
    @Override
    public void sgmvExpand(Tensor v, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        enter();
        String op = "sgmvExpand";
        CudaTensor vs = tensor(v, "v");
        CudaTensor ys = tensor(y, "y");
        ShapeChecks.checkSegments(op, segments, weights, Math.min(vs.rows(), ys.rows()));
        for (int s : segments.slots()) {
            if (weights.present(s)) {
                ShapeChecks.checkExpandSlot(op, weights, s, vs, ys, yCol);
                tensor(weights.b()[s], "lora B of slot " + s);
                ShapeChecks.require(weights.rank()[s] <= EXPAND_MAX_RANK, op,
                        "rank " + weights.rank()[s] + " of slot " + s + " is above the CUDA kernel's " + EXPAND_MAX_RANK);
            }
        }
        int outFeatures = sgmvOutFeatures(op, weights, ys, yCol);
        int tileCount = sgmvTileCount(vs.rows(), weights.slots());
        if (tileCount == 0 || outFeatures == 0) {
            return;
        }
        int[] tiles = sgmvTiles(op, segments, tileCount);
        long table = slotTable(weights);
        int slots = weights.slots();
        args().p(vs.ptr).i(vs.cols()).p(ys.ptr).i(ys.cols()).i(yCol).p(ints(tiles)).p(table + 8L * slots)
                .p(table + 16L * slots).p(table + 20L * slots).i(outFeatures)
                .launch("sgmv_expand", tileCount, ceilDiv(outFeatures, THREADS), 1, THREADS);
    }

    /**
     * Inputs per shrink block: all of them, or, when tiles × rank blocks would leave SMs idle, a share of
     * at least {@link #SHRINK_MIN_SPLIT} so that about {@link #SHRINK_BLOCKS_PER_SM} blocks run per SM. A
     * multiple of 8 (16-byte loads stay aligned). With {@code blocks < target} and
     * {@code splits ≤ ceil(target / blocks)}, blocks · splits stays below 2 · target, the workspace size.
     */
    int shrinkChunk(int tileCount, int vCols, int in) {
        int blocks = tileCount * ceilDiv(vCols, SHRINK_RANKS_PER_BLOCK);
        int target = SHRINK_BLOCKS_PER_SM * multiprocessors;
        int splits = 1;
        if (blocks < target && in >= 2 * SHRINK_MIN_SPLIT) {
            splits = Math.min(ceilDiv(target, blocks), in / SHRINK_MIN_SPLIT);
        }
        return roundUp(ceilDiv(in, splits), 8);
    }

    /**
     * Rows of B, the same for every occupied slot (it is the projection's output size, a shape of the
     * model); {@code y.cols - yCol} while no slot is occupied (every tile then exits).
     */
    private static int sgmvOutFeatures(String op, LoraWeights weights, CudaTensor y, int yCol) {
        ShapeChecks.require(yCol >= 0 && yCol <= y.cols(), op, "column " + yCol + " is outside y " + y);
        int out = -1;
        for (int s = 0; s < weights.slots(); s++) {
            if (weights.present(s) && weights.b()[s] != null) {
                int rows = weights.b()[s].rows();
                ShapeChecks.require(out < 0 || rows == out, op,
                        "lora B of slot " + s + " " + weights.b()[s] + " has " + rows + " outputs, other slots " + out);
                out = rows;
            }
        }
        if (out < 0) {
            return y.cols() - yCol;
        }
        ShapeChecks.require(yCol + out <= y.cols(), op,
                "columns [" + yCol + ", " + (yCol + out) + ") of lora B are outside y " + y);
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
        int k = 0;
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (slot < 0) {
                continue;
            }
            int end = segments.starts()[i + 1];
            for (int r = segments.starts()[i]; r < end; r += SGMV_TILE_ROWS) {
                if (k == tiles.length) {
                    throw ShapeChecks.fail(op, "segments " + Arrays.toString(segments.slots()) + " over "
                            + segments.rows() + " rows need more than " + tileCount + " tiles of " + SGMV_TILE_ROWS
                            + " rows: a slot has several segments; group each adapter's rows into one segment");
                }
                tiles[k++] = r;
                tiles[k++] = Math.min(SGMV_TILE_ROWS, end - r);
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

    /**
     * A device block of at least {@code bytes}: a freed one of the same size if there is one, else a new
     * one; when the device is full, the free lists are given back to the driver and the allocation tried
     * again. Reuse needs no waiting: work on the compute stream is ordered after the work that used the
     * block before, and a copy on the copy stream first waits for the compute stream (see
     * {@link #loadWeightsAsync}).
     */
    private long alloc(long bytes) {
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

    private void ensureAttentionWorkspace(long bytes) {
        if (bytes <= attentionWorkspaceBytes) {
            return;
        }
        if (attentionWorkspace != 0) {
            driver.streamSynchronize(stream);
            release(attentionWorkspace);
        }
        attentionWorkspaceBytes = Math.max(bytes, 2 * attentionWorkspaceBytes);
        attentionWorkspace = alloc(attentionWorkspaceBytes);
    }

    /** Reserves ring space; when the ring is full, waits for the stream and starts over. */
    private long ringAlloc(long bytes) {
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

    /** A device copy of {@code values}, shared with an equal array uploaded recently. */
    private long ints(int[] values) {
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
        launchValues.set(JAVA_INT, 8L * argCount++, value);
        return this;
    }

    private CudaBackend f(float value) {
        launchValues.set(JAVA_FLOAT, 8L * argCount++, value);
        return this;
    }

    private void launch(String kernel, int gx, int gy, int gz, int threads) {
        if (profiler != null) {
            profiler.begin(kernel);
        }
        driver.launchKernel(kernels.function(kernel), gx, gy, gz, threads, 1, 1, 0, stream, launchPointers, kernel);
        if (profiler != null) {
            profiler.end();
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
        closed = true;
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
        driver.streamDestroy(stream);
        driver.primaryContextRelease(device);
        arena.close();
    }
}
