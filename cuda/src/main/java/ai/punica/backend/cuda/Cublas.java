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
import java.util.List;

/**
 * FFM bindings to cuBLAS ({@code libcublas.so.13}) for the dense projections: bf16 × bf16 with float32
 * accumulation through {@code cublasGemmEx}. One handle per backend, bound to the backend's stream.
 */
final class Cublas implements AutoCloseable {
    static final int CUBLAS_OP_N = 0;
    static final int CUBLAS_OP_T = 1;
    static final int CUDA_R_32F = 0;
    static final int CUDA_R_16F = 2;
    static final int CUDA_R_16BF = 14;
    static final int CUBLAS_COMPUTE_32F = 68;
    static final int CUBLAS_GEMM_DEFAULT = -1;

    private static volatile Lib lib;

    /** The library's entry points, bound once per process. */
    private record Lib(MethodHandle create, MethodHandle destroy, MethodHandle setStream, MethodHandle setWorkspace,
                       MethodHandle setSmCountTarget, MethodHandle gemmEx, MethodHandle statusString) {
    }

    private final Lib l;
    private final MemorySegment handle;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment alpha;
    private final MemorySegment beta;

    Cublas(MemorySegment stream, long workspace, long workspaceBytes) {
        l = lib();
        try {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) l.create.invokeExact(p), "cublasCreate_v2");
            handle = p.get(ADDRESS, 0);
            check((int) l.setStream.invokeExact(handle, stream), "cublasSetStream_v2");
            check((int) l.setWorkspace.invokeExact(handle, MemorySegment.ofAddress(workspace), workspaceBytes),
                    "cublasSetWorkspace_v2");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cuBLAS set-up failed: " + t, t);
        }
        alpha = arena.allocate(JAVA_FLOAT);
        beta = arena.allocate(JAVA_FLOAT);
    }

    private static Lib lib() {
        Lib x = lib;
        if (x == null) {
            synchronized (Cublas.class) {
                if (lib == null) {
                    SymbolLookup s = NativeLibraries.load("cuBLAS", List.of("libcublas.so.13", "libcublas.so"),
                            List.of("libcublasLt.so.13"));
                    Linker linker = Linker.nativeLinker();
                    java.util.function.BiFunction<String, MemoryLayout[], MethodHandle> h = (name, args) ->
                            linker.downcallHandle(s.find(name).orElseThrow(
                                    () -> new CudaException("cuBLAS has no symbol " + name)), FunctionDescriptor.of(JAVA_INT, args));
                    lib = new Lib(
                            h.apply("cublasCreate_v2", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasDestroy_v2", new MemoryLayout[] {ADDRESS}),
                            h.apply("cublasSetStream_v2", new MemoryLayout[] {ADDRESS, ADDRESS}),
                            h.apply("cublasSetWorkspace_v2", new MemoryLayout[] {ADDRESS, ADDRESS, JAVA_LONG}),
                            h.apply("cublasSetSmCountTarget", new MemoryLayout[] {ADDRESS, JAVA_INT}),
                            h.apply("cublasGemmEx", new MemoryLayout[] {ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                                    JAVA_INT, ADDRESS, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS,
                                    ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT}),
                            linker.downcallHandle(s.find("cublasGetStatusString").orElseThrow(),
                                    FunctionDescriptor.of(ADDRESS, JAVA_INT)));
                }
                x = lib;
            }
        }
        return x;
    }

    /**
     * {@code out[r, o] = Σ_i x[r, i] · w[o, i]} for row-major bf16 {@code x [rows, in]}, {@code w [outF, in]},
     * {@code out [rows, outF]} (row stride {@code ldOut}; bf16 or, {@code outType} {@link #CUDA_R_32F}, float32). In cuBLAS's column-major terms this is
     * {@code C[outF, rows] = Wᵀ[outF, in] · X[in, rows]}, W being column-major {@code [in, outF]}: one call.
     */
    void gemmBf16(long x, long w, long out, int rows, int in, int outF, int ldOut, int weightType, int outType) {
        alpha.set(JAVA_FLOAT, 0, 1f);
        beta.set(JAVA_FLOAT, 0, 0f);
        int rc;
        try {
            rc = (int) l.gemmEx.invokeExact(handle, CUBLAS_OP_T, CUBLAS_OP_N, outF, rows, in, alpha,
                    MemorySegment.ofAddress(w), weightType, in, MemorySegment.ofAddress(x), CUDA_R_16BF, in, beta,
                    MemorySegment.ofAddress(out), outType, ldOut, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        } catch (Throwable t) {
            throw new CudaException("cublasGemmEx: native call failed: " + t, t);
        }
        if (rc != 0) {
            throw new CudaException("cublasGemmEx(m=" + outF + ", n=" + rows + ", k=" + in + ") failed: " + statusText(rc));
        }
    }

    private void check(int status, String call) {
        if (status != 0) {
            throw new CudaException(call + " failed: " + statusText(status));
        }
    }

    private String statusText(int status) {
        try {
            MemorySegment s = (MemorySegment) l.statusString.invokeExact(status);
            return s.reinterpret(256).getString(0) + " (" + status + ")";
        } catch (Throwable t) {
            return "cublasStatus " + status;
        }
    }

    /** GEMMs of this handle plan for at most {@code sms} SMs (cublasSetSmCountTarget; 0: all of them). */
    void smCountTarget(int sms) {
        try {
            check((int) l.setSmCountTarget.invokeExact(handle, sms), "cublasSetSmCountTarget");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasSetSmCountTarget: " + t, t);
        }
    }

    @Override
    public void close() {
        try {
            check((int) l.destroy.invokeExact(handle), "cublasDestroy_v2");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("cublasDestroy_v2: " + t, t);
        } finally {
            arena.close();
        }
    }
}
