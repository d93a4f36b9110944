package ai.punica.backend.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Our kernels, loaded into the current context: each {@code kernels/<name>.fatbin} that the build's nvcc
 * produced, or, where there is none or the driver cannot use it, the packaged {@code <name>.cu} compiled
 * by NVRTC for this device.
 */
final class KernelModules implements AutoCloseable {
    static final String RESOURCE_DIR = "/ai/punica/backend/cuda/kernels/";
    static final List<String> SOURCES = List.of("elementwise", "attention", "attention_tc", "sgmv", "sgmv_tc", "fused",
            "sampling");
    static final List<String> HEADERS = List.of("common.cuh", "kernel_constants.cuh", "slot_table.cuh");

    private static final Logger log = LoggerFactory.getLogger(KernelModules.class);

    private final Driver driver;
    private final List<MemorySegment> modules = new ArrayList<>();
    private final Map<String, MemorySegment> functions = new HashMap<>();
    /** How each module was loaded ("fatbin" or "nvrtc sm_90"), for logs and tests. */
    private final Map<String, String> origin = new LinkedHashMap<>();

    /** {@code nvrtc}: compile the packaged sources even where a fatbin would load ({@link CudaOptions#nvrtc}). */
    KernelModules(Driver driver, int ccMajor, int ccMinor, boolean nvrtc) {
        this.driver = driver;
        Nvrtc compiler = null;
        try (Arena images = Arena.ofConfined()) {
            for (String name : SOURCES) {
                MemorySegment module = null;
                String why = "no fatbin in the jar (built without nvcc)";
                byte[] fatbin = nvrtc ? null : resource(name + ".fatbin");
                if (fatbin == null && nvrtc) {
                    why = "-Dpunica.cuda.nvrtc=true";
                }
                if (fatbin != null) {
                    String[] error = new String[1];
                    MemorySegment image = images.allocate(fatbin.length + 16L, 16);
                    MemorySegment.copy(fatbin, 0, image, ValueLayout.JAVA_BYTE, 0, fatbin.length);
                    module = driver.moduleLoadData(image, error);
                    if (module != null) {
                        origin.put(name, "fatbin");
                    } else {
                        why = error[0];
                    }
                }
                if (module == null) {
                    if (compiler == null) {
                        try {
                            compiler = new Nvrtc();
                        } catch (CudaException e) {
                            throw new CudaException("cannot load kernels '" + name + "': " + why
                                    + ", and NVRTC is unavailable to compile the sources: " + e.getMessage(), e);
                        }
                    }
                    log.info("compiling kernels '{}' with NVRTC for sm_{}{} ({})", name, ccMajor, ccMinor, why);
                    Map<String, String> headers = new LinkedHashMap<>();
                    for (String h : HEADERS) {
                        headers.put(h, text(h));
                    }
                    MemorySegment cubin = compiler.compileToCubin(name + ".cu", text(name + ".cu"), headers, ccMajor, ccMinor, images);
                    String[] error = new String[1];
                    module = driver.moduleLoadData(cubin, error);
                    if (module == null) {
                        throw new CudaException("NVRTC output for '" + name + "' does not load: " + error[0]);
                    }
                    origin.put(name, "nvrtc sm_" + ccMajor + ccMinor);
                }
                modules.add(module);
            }
        }
    }

    /** Where each module came from: "fatbin" or "nvrtc sm_XY". */
    Map<String, String> origin() {
        return origin;
    }

    /** The kernel {@code name} (an extern "C" symbol in one of the modules). */
    MemorySegment function(String name) {
        return functions.computeIfAbsent(name, n -> {
            for (MemorySegment m : modules) {
                MemorySegment f = driver.moduleGetFunction(m, n);
                if (f != null) {
                    return f;
                }
            }
            throw new CudaException("no kernel named '" + n + "' in " + SOURCES);
        });
    }

    private static byte[] resource(String name) {
        try (InputStream in = KernelModules.class.getResourceAsStream(RESOURCE_DIR + name)) {
            return in == null ? null : in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String text(String name) {
        byte[] b = resource(name);
        if (b == null) {
            throw new CudaException("kernel source " + RESOURCE_DIR + name + " is missing from the jar");
        }
        return new String(b, StandardCharsets.UTF_8);
    }

    @Override
    public void close() {
        for (MemorySegment m : modules) {
            driver.moduleUnload(m);
        }
        modules.clear();
        functions.clear();
    }
}
