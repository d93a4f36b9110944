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
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.Tensor;
import ai.punica.model.TensorData;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
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
    private static final int EXPAND_MAX_RANK = 256;
    private static final int ATT_TILE = 128;
    private static final int ATT_MAX_GROUP = 16;
    private static final int ATT_MAX_HEAD_DIM = 256;
    /** sampling.cu: one block of SAMPLE_THREADS per row, 16 histogram cells per thread, ints per row in and out. */
    private static final int SAMPLE_THREADS = 1024;
    private static final int SAMPLE_SMEM = 16 * SAMPLE_THREADS * 4;
    private static final int SAMPLE_ROW_INTS = 12;
    private static final int SAMPLE_OUT_INTS = 3 + 2 * SamplingRow.MAX_LOGPROBS;

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
    /** float32 [rows, vocab] work rows of the sampling kernel; grows, never shrinks. */
    private long samplingWorkspace;
    private long samplingWorkspaceBytes;
    private boolean samplingSmemOptIn;
    private final Set<Long> liveAllocations = new HashSet<>();
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
        cublas.gemmBf16(xs.ptr, ws.ptr, o.ptr, xs.rows(), xs.cols(), ws.rows(), o.cols(), Cublas.CUDA_R_16BF);
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
        driver.launchKernel(attentionKernel, rows, shape.numKvHeads(), splits, 128, 1, 1, smem, stream, launchPointers,
                "attention_paged");
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
        driver.launchKernel(kernel, rows, 1, 1, SAMPLE_THREADS, 1, 1, SAMPLE_SMEM, stream, launchPointers, "sample_rows");
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
        Thread current = Thread.currentThread();
        if (current != boundThread) {
            driver.setCurrent(context);
            boundThread = current;
        }
    }

    private long alloc(long bytes) {
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
        driver.launchKernel(kernels.function(kernel), gx, gy, gz, threads, 1, 1, 0, stream, launchPointers, kernel);
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
        for (Iterator<Long> it = liveAllocations.iterator(); it.hasNext(); ) {
            driver.memFree(it.next());
            it.remove();
        }
        slotTables.clear();
        ropeTables.clear();
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
