package ai.punica.backend.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * Finds the CUDA libraries. libcuda comes with the driver and is on the loader's path; the toolkit's
 * libraries (cuBLAS, NVRTC) are looked up by name first (LD_LIBRARY_PATH, ldconfig), then in
 * {@code -Dpunica.cuda.libPath}, {@code $CUDA_HOME/lib64}, {@code /usr/local/cuda/lib64} and every
 * LD_LIBRARY_PATH folder.
 */
final class NativeLibraries {
    private NativeLibraries() {
    }

    /** Folders searched for toolkit libraries, in order. */
    static List<Path> searchPath() {
        Set<Path> dirs = new LinkedHashSet<>();
        String prop = System.getProperty("punica.cuda.libPath");
        if (prop != null) {
            for (String p : prop.split(java.io.File.pathSeparator)) {
                if (!p.isBlank()) {
                    dirs.add(Path.of(p));
                }
            }
        }
        String cudaHome = System.getenv("CUDA_HOME");
        if (cudaHome == null) {
            cudaHome = System.getenv("CUDA_PATH");
        }
        if (cudaHome != null) {
            dirs.add(Path.of(cudaHome, "lib64"));
            dirs.add(Path.of(cudaHome, "lib"));
        }
        dirs.add(Path.of("/usr/local/cuda/lib64"));
        dirs.add(Path.of("/usr/local/cuda/lib"));
        String ld = System.getenv("LD_LIBRARY_PATH");
        if (ld != null) {
            for (String p : ld.split(":")) {
                if (!p.isBlank()) {
                    dirs.add(Path.of(p));
                }
            }
        }
        return new ArrayList<>(dirs);
    }

    /**
     * Loads the first of {@code names} that the loader or the search path knows. {@code companions} are
     * loaded from the same folder first, so that the library's own dependencies resolve there.
     *
     * @throws CudaException listing where it looked
     */
    static SymbolLookup load(String what, List<String> names, List<String> companions) {
        List<String> tried = new ArrayList<>();
        for (String name : names) {
            try {
                for (String c : companions) {
                    tryLoad(c);
                }
                return SymbolLookup.libraryLookup(name, Arena.global());
            } catch (IllegalArgumentException e) {
                tried.add(name);
            }
        }
        for (Path dir : searchPath()) {
            for (String name : names) {
                Path p = dir.resolve(name);
                if (Files.isRegularFile(p)) {
                    for (String c : companions) {
                        Path cp = dir.resolve(c);
                        if (Files.isRegularFile(cp)) {
                            SymbolLookup.libraryLookup(cp, Arena.global());
                        }
                    }
                    return SymbolLookup.libraryLookup(p, Arena.global());
                }
                tried.add(p.toString());
            }
        }
        throw new CudaException(what + " not found; tried " + tried
                + ". Set CUDA_HOME, LD_LIBRARY_PATH or -Dpunica.cuda.libPath to the folder that holds it.");
    }

    private static void tryLoad(String name) {
        try {
            SymbolLookup.libraryLookup(name, Arena.global());
        } catch (IllegalArgumentException ignored) {
            // the main library may still find it through its own run path
        }
    }
}
