package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The projections' GEMMs with the algorithm picked by timing ({@link CudaOptions#gemmTuning()}). The first GEMM of a
 * shape (rows, inputs, outputs, output stride and type, pointer alignment) that runs outside a graph capture times
 * {@code cublasGemmEx}'s own choice and up to {@value #CANDIDATES} algorithms that cuBLASLt's heuristic offers for it,
 * each {@value #REPS} times with L2 flushed before each run (a decode step reads its weights from HBM), and keeps the
 * fastest for that shape: a cuBLASLt algorithm ({@code cublasLtMatmul}) or {@code cublasGemmEx}. A shape first met
 * while a step graph is being captured runs {@code cublasGemmEx} untimed; step graphs capture a step only after
 * running it eagerly once, so their GEMMs are timed by then.
 *
 * <p>Only algorithms whose split-K reduction runs in a workspace (never accumulated in place in the output) are
 * offered, so results do not depend on timing between blocks. A shape's result may differ from
 * {@code cublasGemmEx}'s in the last bits (another summation order) but is the same on every call.
 */
final class TunedGemms implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(TunedGemms.class);

    /** cuBLASLt algorithms timed per shape, besides cublasGemmEx. */
    static final int CANDIDATES = 16;
    /** Timed runs per candidate (the median counts). */
    static final int REPS = 5;
    /** Bytes written between timed runs so that L2 (50 MB on an H100 or H200) holds none of the weights. */
    private static final long FLUSH_BYTES = 128L << 20;

    // cublasLt.h
    private static final int DESC_TRANSA = 3;
    private static final int DESC_TRANSB = 4;
    private static final int PREF_MAX_WORKSPACE_BYTES = 1;
    private static final int PREF_REDUCTION_SCHEME_MASK = 3;
    private static final int PREF_MIN_ALIGNMENT_A = 5;
    /** CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | _OUTPUT_TYPE: split-K partials in the workspace, not INPLACE (1). */
    private static final int REDUCTION_IN_WORKSPACE = 2 | 4;
    /** cublasLtMatmulHeuristicResult_t: the algorithm (64 bytes), workspaceSize, state, wavesCount, 4 reserved ints. */
    private static final long RESULT_BYTES = 96;
    private static final long ALGO_BYTES = 64;
    private static final long RESULT_WORKSPACE = 64;
    private static final long RESULT_STATE = 72;

    private record Lib(MethodHandle create, MethodHandle destroy, MethodHandle descCreate, MethodHandle descSet,
                       MethodHandle descDestroy, MethodHandle layoutCreate, MethodHandle layoutDestroy,
                       MethodHandle prefCreate, MethodHandle prefSet, MethodHandle prefDestroy,
                       MethodHandle heuristic, MethodHandle matmul) {
    }

    /** One GEMM problem as cuBLAS sees it; {@code alignment}: the largest power of two (≤ 256) all three pointers share. */
    record Shape(int rows, int in, int outF, int ldOut, int outType, int alignment) {
    }

    /** What a shape runs: a cuBLASLt algorithm and its descriptors, or ({@code algo} null) cublasGemmEx. */
    private record Plan(MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment c, MemorySegment algo,
                        String chosen) {
    }

    private static volatile Lib lib;

    private final CudaContext ctx;
    private final MemorySegment stream;
    private final long workspace;
    private final long workspaceBytes;
    private final Lib l;
    private final MemorySegment handle;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment alpha;
    private final MemorySegment beta;
    private final Map<Shape, Plan> plans = new HashMap<>();
    /** The L2 flush buffer, while a shape is being timed; 0 otherwise. */
    private long flush;

    TunedGemms(CudaContext ctx, MemorySegment stream, long workspace, long workspaceBytes) {
        this.ctx = ctx;
        this.stream = stream;
        this.workspace = workspace;
        this.workspaceBytes = workspaceBytes;
        l = lib();
        MemorySegment p = arena.allocate(ADDRESS);
        check(invoke(() -> (int) l.create.invokeExact(p)), "cublasLtCreate");
        handle = p.get(ADDRESS, 0);
        alpha = arena.allocate(JAVA_FLOAT);
        alpha.set(JAVA_FLOAT, 0, 1f);
        beta = arena.allocate(JAVA_FLOAT);
        beta.set(JAVA_FLOAT, 0, 0f);
    }

    private static Lib lib() {
        Lib x = lib;
        if (x == null) {
            synchronized (TunedGemms.class) {
                if (lib == null) {
                    SymbolLookup s = NativeLibraries.load("cuBLASLt", List.of("libcublasLt.so.13", "libcublasLt.so"),
                            List.of());
                    Linker linker = Linker.nativeLinker();
                    java.util.function.BiFunction<String, MemoryLayout[], MethodHandle> h = (name, args) ->
                            linker.downcallHandle(s.find(name).orElseThrow(
                                    () -> new CudaException("cuBLASLt has no symbol " + name)),
                                    FunctionDescriptor.of(JAVA_INT, args));
                    lib = new Lib(
                            h.apply("cublasLtCreate", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasLtDestroy", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasLtMatmulDescCreate", new MemoryLayout[] {ADDRESS, JAVA_INT, JAVA_INT}),
                            h.apply("cublasLtMatmulDescSetAttribute",
                                    new MemoryLayout[] {ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG}),
                            h.apply("cublasLtMatmulDescDestroy", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasLtMatrixLayoutCreate",
                                    new MemoryLayout[] {ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG}),
                            h.apply("cublasLtMatrixLayoutDestroy", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasLtMatmulPreferenceCreate", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasLtMatmulPreferenceSetAttribute",
                                    new MemoryLayout[] {ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG}),
                            h.apply("cublasLtMatmulPreferenceDestroy", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasLtMatmulAlgoGetHeuristic", new MemoryLayout[] {ADDRESS, ADDRESS, ADDRESS,
                                    ADDRESS, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS}),
                            h.apply("cublasLtMatmul", new MemoryLayout[] {ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS,
                                    ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS,
                                    JAVA_LONG, ADDRESS}));
                }
                x = lib;
            }
        }
        return x;
    }

    /**
     * {@code out = x·wᵀ} as {@link Cublas#gemmBf16} computes it (bf16 {@code x [rows, in]} and {@code w [outF, in]},
     * {@code out} rows {@code ldOut} apart, bf16 or float32), by the plan of its shape; {@code fallback} runs
     * cublasGemmEx where that is the plan or no plan can be made now.
     */
    void gemm(Cublas fallback, long x, long w, long out, int rows, int in, int outF, int ldOut, int outType) {
        Shape shape = new Shape(rows, in, outF, ldOut, outType, alignment(x, w, out));
        Plan plan = plans.get(shape);
        if (plan == null) {
            if (ctx.capture.capturing()) {
                fallback.gemmBf16(x, w, out, rows, in, outF, ldOut, Cublas.CUDA_R_16BF, outType);
                return;
            }
            try {
                plan = tune(shape, fallback, x, w, out);
            } catch (CudaException e) {
                log.warn("GEMM {}: no cuBLASLt algorithm could be timed ({}): cublasGemmEx", describe(shape),
                        e.getMessage());
                plan = new Plan(null, null, null, null, null, "cublasGemmEx (tuning failed)");
            }
            plans.put(shape, plan);
        }
        if (plan.algo == null) {
            fallback.gemmBf16(x, w, out, rows, in, outF, ldOut, Cublas.CUDA_R_16BF, outType);
        } else {
            check(matmul(plan, plan.algo, x, w, out), "cublasLtMatmul(" + describe(shape) + ")");
        }
    }

    /** The shapes tuned so far and what each runs (for logs and tests). */
    Map<Shape, String> choices() {
        Map<Shape, String> out = new HashMap<>();
        plans.forEach((s, p) -> out.put(s, p.chosen));
        return out;
    }

    private static int alignment(long... pointers) {
        long bits = 256;
        for (long p : pointers) {
            bits |= p;
        }
        return (int) Long.lowestOneBit(bits);
    }

    private Plan tune(Shape s, Cublas fallback, long x, long w, long out) {
        MemorySegment desc;
        MemorySegment a;
        MemorySegment b;
        MemorySegment c;
        List<MemorySegment> algos = new ArrayList<>();
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment p = scratch.allocate(ADDRESS);
            check(invoke(() -> (int) l.descCreate.invokeExact(p, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUDA_R_32F)),
                    "cublasLtMatmulDescCreate");
            desc = p.get(ADDRESS, 0);
            MemorySegment op = scratch.allocate(JAVA_INT);
            op.set(JAVA_INT, 0, Cublas.CUBLAS_OP_T);
            check(invoke(() -> (int) l.descSet.invokeExact(desc, DESC_TRANSA, op, 4L)), "TRANSA");
            MemorySegment opB = scratch.allocate(JAVA_INT);
            opB.set(JAVA_INT, 0, Cublas.CUBLAS_OP_N);
            check(invoke(() -> (int) l.descSet.invokeExact(desc, DESC_TRANSB, opB, 4L)), "TRANSB");
            // Column-major, as cublasGemmEx sees it: A = W (in × outF, op T), B = x (in × rows), C = out (outF × rows).
            a = layout(scratch, Cublas.CUDA_R_16BF, s.in(), s.outF(), s.in());
            b = layout(scratch, Cublas.CUDA_R_16BF, s.in(), s.rows(), s.in());
            c = layout(scratch, s.outType(), s.outF(), s.rows(), s.ldOut());
            MemorySegment pp = scratch.allocate(ADDRESS);
            check(invoke(() -> (int) l.prefCreate.invokeExact(pp)), "cublasLtMatmulPreferenceCreate");
            MemorySegment pref = pp.get(ADDRESS, 0);
            try {
                MemorySegment ws = scratch.allocate(JAVA_LONG);
                ws.set(JAVA_LONG, 0, workspaceBytes);
                check(invoke(() -> (int) l.prefSet.invokeExact(pref, PREF_MAX_WORKSPACE_BYTES, ws, 8L)), "workspace");
                MemorySegment mask = scratch.allocate(JAVA_INT);
                mask.set(JAVA_INT, 0, REDUCTION_IN_WORKSPACE);
                check(invoke(() -> (int) l.prefSet.invokeExact(pref, PREF_REDUCTION_SCHEME_MASK, mask, 4L)),
                        "reduction schemes");
                MemorySegment align = scratch.allocate(JAVA_INT);
                align.set(JAVA_INT, 0, s.alignment());
                for (int m = 0; m < 4; m++) {   // A, B, C, D
                    int attr = PREF_MIN_ALIGNMENT_A + m;
                    check(invoke(() -> (int) l.prefSet.invokeExact(pref, attr, align, 4L)), "alignment");
                }
                MemorySegment results = scratch.allocate(RESULT_BYTES * CANDIDATES, 8);
                MemorySegment found = scratch.allocate(JAVA_INT);
                int rc = invoke(() -> (int) l.heuristic.invokeExact(handle, desc, a, b, c, c, pref, CANDIDATES,
                        results, found));
                if (rc == 0) {
                    for (int i = 0; i < found.get(JAVA_INT, 0); i++) {
                        MemorySegment r = results.asSlice(RESULT_BYTES * i, RESULT_BYTES);
                        if (r.get(JAVA_INT, RESULT_STATE) == 0 && r.get(JAVA_LONG, RESULT_WORKSPACE) <= workspaceBytes) {
                            algos.add(arena.allocate(ALGO_BYTES, 8).copyFrom(r.asSlice(0, ALGO_BYTES)));
                        }
                    }
                } else {
                    log.warn("cuBLASLt offers no algorithm for {} (status {}): cublasGemmEx", describe(s), rc);
                }
            } finally {
                invoke(() -> (int) l.prefDestroy.invokeExact(pref));
            }
        }

        Driver d = ctx.driver;
        MemorySegment start = d.eventCreate();
        MemorySegment end = d.eventCreate();
        try {
            flush = d.memAlloc(FLUSH_BYTES);
            double best = time(() -> fallback.gemmBf16(x, w, out, s.rows(), s.in(), s.outF(), s.ldOut(),
                    Cublas.CUDA_R_16BF, s.outType()), start, end);
            double gemmEx = best;
            int chosen = -1;
            for (int i = 0; i < algos.size(); i++) {
                MemorySegment algo = algos.get(i);
                double t;
                try {
                    t = time(() -> check(matmul(new Plan(desc, a, b, c, algo, ""), algo, x, w, out), "cublasLtMatmul"),
                            start, end);
                } catch (CudaException e) {
                    log.debug("cuBLASLt algorithm {} of {} failed: {}", i, describe(s), e.getMessage());
                    continue;
                }
                if (t < best) {
                    best = t;
                    chosen = i;
                }
            }
            String what = chosen < 0 ? "cublasGemmEx" : "cuBLASLt heuristic #" + chosen;
            log.info("GEMM {}: {} ({} us; cublasGemmEx {} us; {} cuBLASLt algorithms timed)", describe(s), what,
                    String.format("%.1f", best), String.format("%.1f", gemmEx), algos.size());
            if (chosen < 0) {
                destroy(desc, a, b, c);
                return new Plan(null, null, null, null, null, what);
            }
            return new Plan(desc, a, b, c, algos.get(chosen), what + String.format(" (%.1f vs %.1f us)", best, gemmEx));
        } catch (CudaException e) {
            destroy(desc, a, b, c);
            throw e;
        } finally {
            if (flush != 0) {
                d.streamSynchronize(stream);
                d.memFree(flush);
                flush = 0;
            }
            d.eventDestroy(start);
            d.eventDestroy(end);
        }
    }

    /** Median device time of {@code call} in microseconds, over {@value #REPS} runs each after an L2 flush. */
    private double time(Runnable call, MemorySegment start, MemorySegment end) {
        Driver d = ctx.driver;
        call.run(); // first run: lazy initialisation inside the library stays out of the times
        double[] us = new double[REPS];
        for (int r = 0; r < REPS; r++) {
            d.memsetD32Async(flush, r, FLUSH_BYTES / 4, stream);
            d.eventRecord(start, stream);
            call.run();
            d.eventRecord(end, stream);
            d.eventSynchronize(end);
            us[r] = 1000.0 * d.eventElapsedMillis(start, end);
        }
        Arrays.sort(us);
        return us[REPS / 2];
    }

    private int matmul(Plan plan, MemorySegment algo, long x, long w, long out) {
        MemorySegment o = MemorySegment.ofAddress(out);
        return invoke(() -> (int) l.matmul.invokeExact(handle, plan.desc, alpha, MemorySegment.ofAddress(w), plan.a,
                MemorySegment.ofAddress(x), plan.b, beta, o, plan.c, o, plan.c, algo, MemorySegment.ofAddress(workspace),
                workspaceBytes, stream));
    }

    private MemorySegment layout(Arena scratch, int type, long rows, long cols, long ld) {
        MemorySegment p = scratch.allocate(ADDRESS);
        check(invoke(() -> (int) l.layoutCreate.invokeExact(p, type, rows, cols, ld)), "cublasLtMatrixLayoutCreate");
        return p.get(ADDRESS, 0);
    }

    private void destroy(MemorySegment desc, MemorySegment... layouts) {
        for (MemorySegment layout : layouts) {
            invoke(() -> (int) l.layoutDestroy.invokeExact(layout));
        }
        invoke(() -> (int) l.descDestroy.invokeExact(desc));
    }

    private static String describe(Shape s) {
        return s.rows() + "x" + s.in() + " -> " + s.outF() + (s.outType() == Cublas.CUDA_R_32F ? " (f32 out)" : "")
                + (s.ldOut() != s.outF() ? " ld " + s.ldOut() : "") + (s.alignment() < 256 ? " align " + s.alignment() : "");
    }

    private interface NativeCall {
        int call() throws Throwable;
    }

    private static int invoke(NativeCall c) {
        try {
            return c.call();
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cuBLASLt: native call failed: " + t, t);
        }
    }

    private static void check(int status, String what) {
        if (status != 0) {
            throw new CudaException(what + " failed: cublasStatus " + status);
        }
    }

    @Override
    public void close() {
        for (Plan p : plans.values()) {
            if (p.desc != null) {
                destroy(p.desc, p.a, p.b, p.c);
            }
        }
        plans.clear();
        invoke(() -> (int) l.destroy.invokeExact(handle));
        arena.close();
    }
}
