package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.List;
import java.util.Map;

/**
 * Run-time compilation of our kernel sources with NVRTC ({@code libnvrtc.so.13}), used when the jar
 * carries no fatbin that the device can load (a build without nvcc, or a newer GPU without PTX).
 */
final class Nvrtc {
    private final MethodHandle create, compile, cubinSize, cubin, logSize, log, destroy, errorString;

    Nvrtc() {
        SymbolLookup s = NativeLibraries.load("NVRTC", List.of("libnvrtc.so.13", "libnvrtc.so"),
                List.of("libnvrtc-builtins.so.13.0"));
        Linker linker = Linker.nativeLinker();
        java.util.function.BiFunction<String, FunctionDescriptor, MethodHandle> h = (name, fd) -> linker.downcallHandle(
                s.find(name).orElseThrow(() -> new CudaException("NVRTC has no symbol " + name)), fd);
        create = h.apply("nvrtcCreateProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
        compile = h.apply("nvrtcCompileProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
        cubinSize = h.apply("nvrtcGetCUBINSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cubin = h.apply("nvrtcGetCUBIN", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        logSize = h.apply("nvrtcGetProgramLogSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        log = h.apply("nvrtcGetProgramLog", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        destroy = h.apply("nvrtcDestroyProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        errorString = h.apply("nvrtcGetErrorString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    /**
     * Compiles {@code source} for {@code sm_<major><minor>} and returns the cubin in {@code arena}.
     *
     * @param headers include name → text, for {@code #include "..."} in the source
     */
    MemorySegment compileToCubin(String name, String source, Map<String, String> headers, int major, int minor, Arena arena) {
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment prog = tmp.allocate(ADDRESS);
            MemorySegment headerTexts = tmp.allocate(ADDRESS, Math.max(1, headers.size()));
            MemorySegment headerNames = tmp.allocate(ADDRESS, Math.max(1, headers.size()));
            int i = 0;
            for (Map.Entry<String, String> e : headers.entrySet()) {
                headerNames.setAtIndex(ADDRESS, i, tmp.allocateFrom(e.getKey()));
                headerTexts.setAtIndex(ADDRESS, i, tmp.allocateFrom(e.getValue()));
                i++;
            }
            check((int) create.invokeExact(prog, tmp.allocateFrom(source), tmp.allocateFrom(name), headers.size(),
                    headerTexts, headerNames), "nvrtcCreateProgram(" + name + ")");
            MemorySegment p = prog.get(ADDRESS, 0);
            try {
                String[] options = {"--gpu-architecture=sm_" + major + minor, "-std=c++17", "-default-device"};
                MemorySegment opts = tmp.allocate(ADDRESS, options.length);
                for (int k = 0; k < options.length; k++) {
                    opts.setAtIndex(ADDRESS, k, tmp.allocateFrom(options[k]));
                }
                int rc = (int) compile.invokeExact(p, options.length, opts);
                if (rc != 0) {
                    throw new CudaException("nvrtcCompileProgram(" + name + ", sm_" + major + minor + ") failed: "
                            + text(rc) + "\n" + programLog(p, tmp));
                }
                MemorySegment size = tmp.allocate(JAVA_LONG);
                check((int) cubinSize.invokeExact(p, size), "nvrtcGetCUBINSize");
                MemorySegment out = arena.allocate(size.get(JAVA_LONG, 0), 16);
                check((int) cubin.invokeExact(p, out), "nvrtcGetCUBIN");
                return out;
            } finally {
                MemorySegment holder = tmp.allocate(ADDRESS);
                holder.set(ADDRESS, 0, p);
                int ignored = (int) destroy.invokeExact(holder);
            }
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw new CudaException("NVRTC call failed: " + t, t);
        }
    }

    private String programLog(MemorySegment prog, Arena tmp) throws Throwable {
        MemorySegment size = tmp.allocate(JAVA_LONG);
        if ((int) logSize.invokeExact(prog, size) != 0) {
            return "";
        }
        MemorySegment buf = tmp.allocate(Math.max(1, size.get(JAVA_LONG, 0)));
        if ((int) log.invokeExact(prog, buf) != 0) {
            return "";
        }
        return buf.getString(0);
    }

    private void check(int rc, String call) {
        if (rc != 0) {
            throw new CudaException(call + " failed: " + text(rc));
        }
    }

    private String text(int rc) {
        try {
            MemorySegment s = (MemorySegment) errorString.invokeExact(rc);
            return s.reinterpret(256).getString(0) + " (" + rc + ")";
        } catch (Throwable t) {
            return "nvrtcResult " + rc;
        }
    }
}
