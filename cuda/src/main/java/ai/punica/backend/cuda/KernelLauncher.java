package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;

/**
 * Where every kernel launch and every cuBLAS GEMM goes through: the argument words, the stream (the compute
 * stream, or the side stream the SGMV shrink forks to inside {@code matmulLora}), step-graph recording and
 * replay checks, and the profiler's events. {@link Kernels} builds the argument lists, one typed method per
 * kernel; nothing else calls {@link #launch}.
 *
 * <pre>
 *  Kernels.launchX(...) ─► words (p / i / f) ─► launch ─┬ eager / measure: cuLaunchKernel(Ex) on launchStream
 *                                                      ├ capture: noted, then cuLaunchKernel (into the graph)
 *                                                      └ replay: compared with the recording, not enqueued
 * </pre>
 */
final class KernelLauncher {
    private static final long CUBLAS_WORKSPACE_BYTES = 32L << 20;

    private final CudaContext ctx;
    private final KernelModules modules;
    /** Per-kernel device times, when profiling; else null. */
    private final KernelProfiler profiler;
    private final long cublasWorkspace;
    private final Cublas cublas;
    /** The compute stream's GEMMs with timed algorithms ({@link CudaOptions#gemmTuning()}); null: cublasGemmEx's choice. */
    private final TunedGemms tuned;
    /** cuBLAS on the side stream (its own workspace): the GEMM of {@code matmulLoraApart}; 0 and null without it. */
    private final long sideCublasWorkspace;
    private final Cublas sideCublas;
    /**
     * Where {@code matmulLora} runs the SGMV shrink while the GEMM of the same input runs on the compute
     * stream: forked from it after everything enqueued so far, joined back before the expand; and where
     * {@code matmulLoraApart} runs the GEMM while the add-on runs on the compute stream.
     */
    private final MemorySegment sideStream;
    private final MemorySegment forkEvent;
    private final MemorySegment joinEvent;
    /** The stream {@link #launch} enqueues on: the compute stream, or {@link #sideStream} inside a fork. */
    private MemorySegment launchStream;
    private boolean shrinkOnSide;
    private boolean sideForked;

    private final Arena arena = Arena.ofShared();
    /** The launch configuration of programmatic launches ({@link Driver#programmaticLaunchConfig}); null: plain launches. */
    private final MemorySegment programmaticConfig;
    private final MemorySegment launchValues;
    private final MemorySegment launchPointers;
    private int argCount;

    /**
     * @param sideGemms   GEMMs may run on the side stream ({@code matmulLoraApart}): a second cuBLAS handle for it
     * @param sideGemmSms SMs the side stream's GEMMs plan for (0: all): the rest stay free for the add-on beside them
     * @param programmatic every kernel launched with programmatic stream serialization (sm_90+; each kernel's
     *                     {@code pdl_entry} waits for the kernel before it, common.cuh)
     * @param gemmTuning   the compute stream's GEMMs take the algorithm timed fastest for their shape ({@link TunedGemms})
     */
    KernelLauncher(CudaContext ctx, KernelModules modules, KernelProfiler profiler, boolean sideGemms,
                   int sideGemmSms, boolean programmatic, boolean gemmTuning) {
        Driver driver = ctx.driver;
        this.ctx = ctx;
        this.modules = modules;
        this.profiler = profiler;
        sideStream = driver.streamCreate(Driver.CU_STREAM_NON_BLOCKING);
        forkEvent = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        joinEvent = driver.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
        launchStream = ctx.stream;
        cublasWorkspace = driver.memAlloc(CUBLAS_WORKSPACE_BYTES);
        cublas = new Cublas(ctx.stream, cublasWorkspace, CUBLAS_WORKSPACE_BYTES);
        tuned = gemmTuning ? new TunedGemms(ctx, ctx.stream, cublasWorkspace, CUBLAS_WORKSPACE_BYTES) : null;
        sideCublasWorkspace = sideGemms ? driver.memAlloc(CUBLAS_WORKSPACE_BYTES) : 0;
        sideCublas = sideGemms ? new Cublas(sideStream, sideCublasWorkspace, CUBLAS_WORKSPACE_BYTES) : null;
        if (sideGemms && sideGemmSms > 0) {
            sideCublas.smCountTarget(sideGemmSms);
        }
        programmaticConfig = programmatic ? Driver.programmaticLaunchConfig(arena) : null;
        launchValues = arena.allocate(8L * 64, 16);
        launchPointers = arena.allocate(ADDRESS, 64);
        for (int i = 0; i < 64; i++) {
            launchPointers.setAtIndex(ADDRESS, i, launchValues.asSlice(8L * i, 8));
        }
    }

    /** The kernel {@code name} of our modules. */
    MemorySegment function(String name) {
        return modules.function(name);
    }

    /** Lets {@code function} use {@code bytes} of dynamic shared memory (beyond the default 48 KB). */
    void allowSharedMemory(MemorySegment function, int bytes) {
        ctx.driver.funcSetAttribute(function, Driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    }

    // ---- argument words: one reusable block, which the driver copies at launch ----

    KernelLauncher args() {
        argCount = 0;
        return this;
    }

    /** A device pointer. */
    KernelLauncher p(long devicePointer) {
        launchValues.set(JAVA_LONG, 8L * argCount++, devicePointer);
        return this;
    }

    /** A {@code long long}. */
    KernelLauncher l(long value) {
        return p(value);
    }

    KernelLauncher i(int value) {
        launchValues.set(JAVA_LONG, 8L * argCount, 0L); // whole words, so recorded launches compare exactly
        launchValues.set(JAVA_INT, 8L * argCount++, value);
        return this;
    }

    KernelLauncher f(float value) {
        launchValues.set(JAVA_LONG, 8L * argCount, 0L);
        launchValues.set(JAVA_FLOAT, 8L * argCount++, value);
        return this;
    }

    void launch(String kernel, int gx, int gy, int gz, int threads) {
        launch(modules.function(kernel), kernel, gx, gy, gz, threads, 0);
    }

    /**
     * Launches {@code function} with the arguments set since {@link #args()}: enqueued (and recorded while a
     * step graph is captured), or, on replay, only compared with the recorded launch.
     */
    void launch(MemorySegment function, String name, int gx, int gy, int gz, int threads, int smem) {
        if (ctx.capture.inGraph()) {
            long[] words = new long[argCount];
            MemorySegment.copy(launchValues, JAVA_LONG, 0, words, 0, argCount);
            LaunchRecord launch = new LaunchRecord(function.address(), gx, gy, gz, threads, smem,
                    launchStream == sideStream, words);
            if (!ctx.capture.admit(launch, name)) {
                return;
            }
        }
        boolean profiled = profiler != null && !ctx.capture.capturing();
        if (profiled) {
            profiler.begin(name, launchStream);
        }
        if (programmaticConfig != null) {
            ctx.driver.launchKernelProgrammatic(programmaticConfig, function, gx, gy, gz, threads, smem, launchStream,
                    launchPointers, name);
        } else {
            ctx.driver.launchKernel(function, gx, gy, gz, threads, 1, 1, smem, launchStream, launchPointers, name);
        }
        if (profiled) {
            profiler.end(launchStream);
        }
    }

    /**
     * {@code out = x·wᵀ} by cuBLAS ({@code x [rows, in]}, {@code w [features, in]}, out's rows {@code outStride}
     * apart) on the stream launches go to: the compute stream, or the side stream after {@link #forkToSide};
     * recorded and checked like a kernel launch in step graphs.
     */
    void gemm(long x, long w, long out, int rows, int in, int features, int outStride, int outType) {
        boolean side = launchStream == sideStream;
        if (side && sideCublas == null) {
            throw new IllegalStateException("a GEMM on the side stream of a launcher made without side GEMMs");
        }
        if (ctx.capture.inGraph()) {
            LaunchRecord launch = new LaunchRecord(0, rows, in, features, outStride, outType, side,
                    new long[] {x, w, out});
            if (!ctx.capture.admit(launch, "gemm")) {
                return;
            }
        }
        boolean profiled = profiler != null && !ctx.capture.capturing();
        if (profiled) {
            profiler.begin(rows == 1 ? "gemm(1 row)" : rows <= 64 ? "gemm(2-64 rows)" : "gemm(>64 rows)", launchStream);
        }
        if (side) {
            sideCublas.gemmBf16(x, w, out, rows, in, features, outStride, Cublas.CUDA_R_16BF, outType);
        } else if (tuned != null) {
            tuned.gemm(cublas, x, w, out, rows, in, features, outStride, outType);
        } else {
            cublas.gemmBf16(x, w, out, rows, in, features, outStride, Cublas.CUDA_R_16BF, outType);
        }
        if (profiled) {
            profiler.end(launchStream);
        }
    }

    /**
     * {@code bytes} at device address {@code dst} set to zero on the stream launches go to; recorded and checked
     * like a kernel launch in step graphs (function word -2). Four-byte aligned sizes as one 32-bit memset.
     */
    void memset(long dst, long bytes) {
        if (bytes % 4 != 0) {
            throw new IllegalArgumentException("memset of " + bytes + " bytes: a multiple of 4 is needed");
        }
        if (ctx.capture.inGraph()) {
            LaunchRecord launch = new LaunchRecord(-2, 0, 0, 0, 0, 0, launchStream == sideStream,
                    new long[] {dst, bytes});
            if (!ctx.capture.admit(launch, "memset")) {
                return;
            }
        }
        if (bytes > 0) {
            ctx.driver.memsetD32Async(dst, 0, bytes / 4, launchStream);
        }
    }

    /**
     * {@code bytes} from device address {@code src} to {@code dst} on the compute stream; recorded and checked like
     * a kernel launch in step graphs (function word -1, the addresses and size as its arguments).
     */
    void copy(long dst, long src, long bytes) {
        if (ctx.capture.inGraph()) {
            LaunchRecord launch = new LaunchRecord(-1, 0, 0, 0, 0, 0, false, new long[] {dst, src, bytes});
            if (!ctx.capture.admit(launch, "copy")) {
                return;
            }
        }
        ctx.driver.copyDtoDAsync(dst, src, bytes, ctx.stream);
    }

    /** One replay of a recorded step graph on the compute stream (profiled as "step graph"). */
    void launchGraph(MemorySegment exec) {
        if (profiler != null) {
            profiler.begin("step graph", ctx.stream);
        }
        ctx.driver.graphLaunch(exec, ctx.stream);
        if (profiler != null) {
            profiler.end(ctx.stream);
        }
    }

    // ---- the side stream of matmulLora ----

    /** Inside {@code matmulLora}: the next SGMV shrink goes to the side stream ({@link #forkIfAsked}). */
    void shrinkOnSide(boolean on) {
        shrinkOnSide = on;
    }

    /** Launches go to the compute stream again (the fork stays open until {@link #joinSide}). */
    void toComputeStream() {
        launchStream = ctx.stream;
    }

    /**
     * Inside {@code matmulLora}: makes the next launch go to the side stream, which first waits for all
     * work enqueued on the compute stream so far (the input's producer, the index-array and slot-table copies).
     * On replay nothing is enqueued; the launch record notes the stream, so a replay compares it too.
     */
    void forkIfAsked() {
        if (shrinkOnSide) {
            forkToSide();
        }
    }

    /**
     * Launches (and cuBLAS calls) go to the side stream from now on, which first waits for all work enqueued on
     * the compute stream so far: {@code matmulLoraApart}'s GEMM, and {@code matmulLora}'s shrink through
     * {@link #forkIfAsked}. On replay nothing is enqueued; launch records note the stream.
     */
    void forkToSide() {
        if (!ctx.capture.replaying()) {
            ctx.driver.eventRecord(forkEvent, ctx.stream);
            ctx.driver.streamWaitEvent(sideStream, forkEvent);
        }
        sideForked = true;
        launchStream = sideStream;
    }

    /** The compute stream waits for the side stream's work; nothing to do when nothing was forked. */
    void joinSide() {
        if (!sideForked) {
            return;
        }
        sideForked = false;
        launchStream = ctx.stream;
        if (!ctx.capture.replaying()) {
            ctx.driver.eventRecord(joinEvent, sideStream);
            ctx.driver.streamWaitEvent(ctx.stream, joinEvent);
        }
    }

    /** What the tuned GEMMs chose per shape (empty without {@link CudaOptions#gemmTuning()}). */
    Map<TunedGemms.Shape, String> gemmChoices() {
        return tuned == null ? Map.of() : tuned.choices();
    }

    /** cuBLAS, its workspace, the side stream and its events, the argument block. */
    void close() {
        if (tuned != null) {
            tuned.close();
        }
        cublas.close();
        ctx.driver.memFree(cublasWorkspace);
        if (sideCublas != null) {
            sideCublas.close();
            ctx.driver.memFree(sideCublasWorkspace);
        }
        ctx.driver.eventDestroy(forkEvent);
        ctx.driver.eventDestroy(joinEvent);
        ctx.driver.streamDestroy(sideStream);
        arena.close();
    }
}
