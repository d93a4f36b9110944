package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * FFM bindings to NCCL ({@code libnccl.so.2}, NCCL 2.x's C API, {@code nccl.h}), loaded the first time a
 * tensor-parallel group on the CUDA backend asks for it, never otherwise: a server without NCCL runs one GPU
 * per engine as before and fails only {@code --tensor-parallel} with {@link #missingMessage}.
 *
 * <pre>
 *  ncclGetUniqueId(ncclUniqueId*)                               id for ncclCommInitRank (one process per rank)
 *  ncclCommInitRank(ncclComm_t*, int nranks, ncclUniqueId, int rank)      (the id, 128 bytes, by value)
 *  ncclCommInitAll(ncclComm_t* comms, int ndev, const int* devlist)       all ranks of this process at once
 *  ncclAllReduce(send, recv, size_t count, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t)
 *  ncclAllGather(send, recv, size_t sendcount, ncclDataType_t, ncclComm_t, cudaStream_t)
 *  ncclGroupStart(), ncclGroupEnd()                             one thread issuing for several ranks
 *  ncclCommAbort(ncclComm_t), ncclCommDestroy(ncclComm_t), ncclGetErrorString(ncclResult_t)
 * </pre>
 *
 * Collectives are enqueued on the given stream (a CUstream is a cudaStream_t) and return at once.
 */
final class Nccl {
    /** ncclDataType_t. */
    static final int NCCL_FLOAT32 = 7;
    static final int NCCL_BFLOAT16 = 9;
    /** ncclRedOp_t. */
    static final int NCCL_SUM = 0;
    /** NCCL_UNIQUE_ID_BYTES. */
    static final int UNIQUE_ID_BYTES = 128;
    static final StructLayout UNIQUE_ID = MemoryLayout.structLayout(
            MemoryLayout.sequenceLayout(UNIQUE_ID_BYTES, JAVA_BYTE).withName("internal"));

    private static volatile Nccl instance;

    final MethodHandle getUniqueId;
    final MethodHandle commInitRank;
    final MethodHandle commInitAll;
    final MethodHandle allReduce;
    final MethodHandle allGather;
    final MethodHandle groupStart;
    final MethodHandle groupEnd;
    final MethodHandle commAbort;
    final MethodHandle commDestroy;
    private final MethodHandle errorString;

    private Nccl(SymbolLookup lib) {
        Linker linker = Linker.nativeLinker();
        java.util.function.BiFunction<String, MemoryLayout[], MethodHandle> h = (name, args) ->
                linker.downcallHandle(lib.find(name).orElseThrow(
                        () -> new CudaException("NCCL has no symbol " + name + "; NCCL 2.12 or newer is needed")),
                        FunctionDescriptor.of(JAVA_INT, args));
        getUniqueId = h.apply("ncclGetUniqueId", new MemoryLayout[] {ADDRESS});
        commInitRank = h.apply("ncclCommInitRank", new MemoryLayout[] {ADDRESS, JAVA_INT, UNIQUE_ID, JAVA_INT});
        commInitAll = h.apply("ncclCommInitAll", new MemoryLayout[] {ADDRESS, JAVA_INT, ADDRESS});
        allReduce = h.apply("ncclAllReduce", new MemoryLayout[] {ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT,
                ADDRESS, ADDRESS});
        allGather = h.apply("ncclAllGather", new MemoryLayout[] {ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS,
                ADDRESS});
        groupStart = h.apply("ncclGroupStart", new MemoryLayout[] {});
        groupEnd = h.apply("ncclGroupEnd", new MemoryLayout[] {});
        commAbort = h.apply("ncclCommAbort", new MemoryLayout[] {ADDRESS});
        commDestroy = h.apply("ncclCommDestroy", new MemoryLayout[] {ADDRESS});
        errorString = linker.downcallHandle(lib.find("ncclGetErrorString").orElseThrow(
                () -> new CudaException("NCCL has no symbol ncclGetErrorString")), FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    /** The library, loaded on first use; {@link CudaException} with {@link #missingMessage} when it is not here. */
    static Nccl get() {
        Nccl x = instance;
        if (x == null) {
            synchronized (Nccl.class) {
                if (instance == null) {
                    instance = new Nccl(load());
                }
                x = instance;
            }
        }
        return x;
    }

    /**
     * libnccl: {@code -Dpunica.nccl.lib} (the file) when given; else by name on the loader's path and the CUDA
     * folders ({@link NativeLibraries}); else where pip puts it (the nvidia-nccl-cu13 wheel PyTorch depends on:
     * {@code …/python3.X/site-packages/nvidia/nccl/lib}).
     */
    private static SymbolLookup load() {
        String explicit = System.getProperty("punica.nccl.lib");
        if (explicit != null) {
            Path file = Path.of(explicit);
            if (!Files.isRegularFile(file)) {
                throw new CudaException(missingMessage("-Dpunica.nccl.lib=" + explicit + " is not a file"));
            }
            return SymbolLookup.libraryLookup(file, Arena.global());
        }
        try {
            return NativeLibraries.load("NCCL", List.of("libnccl.so.2", "libnccl.so"), List.of());
        } catch (CudaException e) {
            for (Path candidate : pipLocations()) {
                if (Files.isRegularFile(candidate)) {
                    return SymbolLookup.libraryLookup(candidate, Arena.global());
                }
            }
            throw new CudaException(missingMessage(e.getMessage() + "; no nvidia/nccl/lib/libnccl.so.2 under the "
                    + "Python site-packages folders either"), e);
        }
    }

    /** nvidia/nccl/lib/libnccl.so.2 under every python3.* site-packages or dist-packages folder of the usual prefixes. */
    private static List<Path> pipLocations() {
        List<Path> out = new ArrayList<>();
        List<Path> prefixes = new ArrayList<>(List.of(Path.of("/usr/local/lib"), Path.of("/usr/lib"),
                Path.of("/opt/conda/lib")));
        String home = System.getProperty("user.home");
        if (home != null) {
            prefixes.add(Path.of(home, ".local", "lib"));
        }
        for (Path prefix : prefixes) {
            try (DirectoryStream<Path> pythons = Files.newDirectoryStream(prefix, "python3*")) {
                for (Path python : pythons) {
                    for (String packages : new String[] {"site-packages", "dist-packages"}) {
                        out.add(python.resolve(packages).resolve("nvidia/nccl/lib/libnccl.so.2"));
                    }
                }
            } catch (IOException | RuntimeException ignored) {
                // no such prefix
            }
        }
        return out;
    }

    static String missingMessage(String where) {
        return "tensor parallelism on the CUDA backend needs NCCL (libnccl.so.2), which is not installed here ("
                + where + "). Install it (apt install libnccl2, or pip install nvidia-nccl-cu13), or name the file "
                + "with -Dpunica.nccl.lib=/path/libnccl.so.2, or run without --tensor-parallel";
    }

    /** Throws naming {@code call} and NCCL's own description unless {@code result} is ncclSuccess. */
    void check(int result, String call) {
        if (result == 0) {
            return;
        }
        String text;
        try {
            text = ((MemorySegment) errorString.invokeExact(result)).reinterpret(1024).getString(0);
        } catch (Throwable t) {
            text = "error " + result;
        }
        throw new CudaException(call + " failed: " + text + " (ncclResult_t " + result + ")");
    }
}
