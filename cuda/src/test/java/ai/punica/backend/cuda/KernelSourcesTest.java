package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The programmatic-launch contract of common.cuh, read from the kernel sources (runs on any machine): every
 * {@code __global__} kernel calls {@code pdl_entry()} (or {@code pdl_wait()}) in its body, before its first
 * {@code return} and before any call of another function that could write memory, so that a kernel launched
 * with programmatic stream serialization never reads or writes what the kernel before it is still writing,
 * and never completes before that kernel has.
 */
class KernelSourcesTest {
    private static final Path SOURCES = Path.of("src/main/cuda");
    /** An identifier followed by a parameter list; the kernel's name is the last one before its body. */
    private static final Pattern NAME = Pattern.compile("(\\w+)(?:##\\w+)*\\s*\\(");
    private static final Pattern WAIT = Pattern.compile("\\bpdl_(entry|wait)\\(\\)");
    /** A store through an index ({@code y[i] = }, not {@code ==}) or an atomic. */
    private static final Pattern STORE = Pattern.compile("\\[[^]]*]\\s*=(?!=)|\\batomic\\w*\\(");

    /** A kernel's name and its body from its opening brace to the matching close. */
    private record Kernel(String name, String body) {
    }

    @Test
    void everyKernelWaitsForTheOneBeforeItFirst() throws IOException {
        List<String> wrong = new ArrayList<>();
        int kernels = 0;
        try (Stream<Path> files = Files.list(SOURCES)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".cu")).sorted().toList()) {
                String src = Files.readString(f, StandardCharsets.UTF_8);
                kernels += kernels(src).size();
                wrong.addAll(problems(f.getFileName().toString(), src));
            }
        }
        assertThat(kernels).as("kernels found in %s", SOURCES).isGreaterThan(20);
        assertThat(wrong).as("kernels that break common.cuh's programmatic-launch rule").isEmpty();
    }

    @Test
    void aKernelThatReturnsStoresOrNeverWaitsIsCaught() {
        String good = """
                extern "C" __global__ void __launch_bounds__(256) good(const int* t, float* y) {
                    const int n = t[blockIdx.x];
                    pdl_entry();
                    if (n == 0) return;
                    y[n] = 1.0f;
                }
                """;
        assertThat(problems("good.cu", good)).isEmpty();
        assertThat(problems("a.cu", "extern \"C\" __global__ void a(float* y) { if (y == 0) return; pdl_entry(); }"))
                .containsExactly("a.cu a: returns before it waits");
        assertThat(problems("b.cu", "extern \"C\" __global__ void b(float* y) { y[0] = 1.0f; pdl_wait(); }"))
                .containsExactly("b.cu b: stores before it waits");
        assertThat(problems("c.cu", "extern \"C\" __global__ void c(int* y) { atomicAdd(y, 1); pdl_entry(); }"))
                .containsExactly("c.cu c: stores before it waits");
        assertThat(problems("d.cu", "#define K(N) extern \"C\" __global__ void k_##N(float* y) { \\\n y[0] = 0; }"))
                .containsExactly("d.cu k_: no pdl_entry() or pdl_wait()");
    }

    /** What breaks the rule in one source file, a line per kernel. */
    static List<String> problems(String file, String source) {
        List<String> wrong = new ArrayList<>();
        for (Kernel k : kernels(source)) {
            String where = file + " " + k.name();
            Matcher wait = WAIT.matcher(k.body());
            if (!wait.find()) {
                wrong.add(where + ": no pdl_entry() or pdl_wait()");
                continue;
            }
            String before = k.body().substring(0, wait.start());
            if (Pattern.compile("\\breturn\\b").matcher(before).find()) {
                wrong.add(where + ": returns before it waits");
            }
            if (STORE.matcher(before).find()) {
                wrong.add(where + ": stores before it waits");
            }
        }
        return wrong;
    }

    /** Every {@code __global__} function of a source: its name (the last identifier before its parameters) and body. */
    private static List<Kernel> kernels(String src) {
        List<Kernel> found = new ArrayList<>();
        int from = 0;
        int at;
        while ((at = src.indexOf("__global__", from)) >= 0) {
            int open = src.indexOf('{', at);
            String name = "?";
            Matcher m = NAME.matcher(src.substring(at, open));
            while (m.find()) {
                if (!m.group(1).startsWith("__launch_bounds__") && !m.group(1).endsWith("_DIMS")) {
                    name = m.group(1);
                }
            }
            int depth = 0;
            int end = src.length();
            for (int i = open; i < src.length(); i++) {
                char c = src.charAt(i);
                if (c == '{') {
                    depth++;
                } else if (c == '}' && --depth == 0) {
                    end = i;
                    break;
                }
            }
            found.add(new Kernel(name, src.substring(open + 1, end)));
            from = end;
        }
        return found;
    }
}
