package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;

/**
 * The one contract between the host code and the kernels: {@link KernelConstants} is the source, the
 * committed {@code src/main/cuda/kernel_constants.cuh} must be what it generates, and no kernel source may
 * define one of its names again (a copy by hand would drift). Runs on any machine.
 */
class KernelConstantsTest {
    private static final Path SOURCES = Path.of("src/main/cuda");
    private static final Pattern DEFINE = Pattern.compile("^\\s*#\\s*define\\s+(\\w+)", Pattern.MULTILINE);
    private static final Pattern INCLUDE = Pattern.compile("^\\s*#\\s*include\\s+\"([^\"]+)\"", Pattern.MULTILINE);

    @Test
    void committedHeaderIsTheGeneratedOne() throws IOException {
        String committed = Files.readString(SOURCES.resolve("kernel_constants.cuh"), StandardCharsets.UTF_8);
        String generated = KernelConstants.header();
        if (!committed.equals(generated)) {
            Path fresh = Path.of("target", "kernel_constants.cuh");
            Files.createDirectories(fresh.getParent());
            Files.writeString(fresh, generated, StandardCharsets.UTF_8);
            throw new AssertionFailedError("cuda/src/main/cuda/kernel_constants.cuh differs from what KernelConstants"
                    + " generates; take the fresh one: cp cuda/" + fresh + " cuda/" + SOURCES + "/", generated, committed);
        }
    }

    @Test
    void everyConstantFieldIsInTheHeader() throws IllegalAccessException {
        Map<String, Integer> fields = new TreeMap<>();
        for (Field f : KernelConstants.class.getDeclaredFields()) {
            int m = f.getModifiers();
            if (Modifier.isStatic(m) && Modifier.isFinal(m) && f.getType() == int.class) {
                fields.put(f.getName(), f.getInt(null));
            }
        }
        Map<String, Integer> listed = KernelConstants.ALL.stream()
                .collect(Collectors.toMap(KernelConstants.Constant::name, KernelConstants.Constant::value, (a, b) -> {
                    throw new AssertionFailedError("a name is listed twice");
                }, TreeMap::new));
        assertThat(listed).as("KernelConstants.ALL against the class's int constants").isEqualTo(fields);
    }

    @Test
    void noKernelSourceDefinesASharedConstantAgain() throws IOException {
        List<String> copies = new ArrayList<>();
        try (Stream<Path> files = Files.list(SOURCES)) {
            for (Path file : files.filter(p -> !p.getFileName().toString().equals("kernel_constants.cuh")).sorted().toList()) {
                Matcher m = DEFINE.matcher(Files.readString(file, StandardCharsets.UTF_8));
                while (m.find()) {
                    String name = m.group(1);
                    if (KernelConstants.ALL.stream().anyMatch(c -> c.name().equals(name))) {
                        copies.add(file.getFileName() + " defines " + name);
                    }
                }
            }
        }
        assertThat(copies).as("kernel sources must take these from kernel_constants.cuh").isEmpty();
    }

    @Test
    void everyKernelSourceSeesTheHeader() throws IOException {
        assertThat(Files.readString(SOURCES.resolve("common.cuh"), StandardCharsets.UTF_8))
                .contains("#include \"kernel_constants.cuh\"");
        try (Stream<Path> files = Files.list(SOURCES)) {
            for (Path cu : files.filter(p -> p.toString().endsWith(".cu")).toList()) {
                assertThat(Files.readString(cu, StandardCharsets.UTF_8)).as(cu.toString())
                        .contains("#include \"common.cuh\"");
            }
        }
        assertThat(KernelModules.HEADERS).as("headers NVRTC is given").contains("kernel_constants.cuh");
    }

    /** NVRTC sees only the headers it is given: a header a source includes but HEADERS lacks fails at run time. */
    @Test
    void nvrtcIsGivenEveryHeaderTheSourcesInclude() throws IOException {
        List<String> included = new ArrayList<>();
        List<String> headerFiles = new ArrayList<>();
        try (Stream<Path> files = Files.list(SOURCES)) {
            for (Path file : files.sorted().toList()) {
                String name = file.getFileName().toString();
                if (name.endsWith(".cuh")) {
                    headerFiles.add(name);
                }
                Matcher m = INCLUDE.matcher(Files.readString(file, StandardCharsets.UTF_8));
                while (m.find()) {
                    included.add(m.group(1));
                }
            }
        }
        assertThat(included).as("headers the sources include").isNotEmpty();
        assertThat(KernelModules.HEADERS).as("headers NVRTC is given").containsAll(included)
                .containsExactlyInAnyOrderElementsOf(headerFiles);
    }
}
