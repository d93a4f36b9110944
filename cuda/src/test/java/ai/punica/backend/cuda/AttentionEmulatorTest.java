package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The host emulation of the attention kernels (cuda/src/test/emu/run_emu.sh: the kernels' own sources compiled with g++,
 * warp collectives emulated from the PTX fragment layouts) against a float64 reference, so that the emulator keeps
 * compiling with the kernel sources it includes and the kernels' index arithmetic is checked on every machine without
 * a GPU: attention_tc.cu on its first three problem classes, attention.cu's decode kernels and their split merge on
 * five. Skipped where there is no g++ or python3.
 */
class AttentionEmulatorTest {
    @Test
    void theTensorCoreAttentionKernelMatchesFloat64OnTheHost(@TempDir Path work) throws IOException, InterruptedException {
        String out = emulate(work, "3");
        assertThat(out).contains("EMU PASSED").doesNotContain("FAIL");
        assertThat(out.lines().filter(l -> l.startsWith("EMU ctx")).count()).isEqualTo(3);
    }

    /**
     * The decode kernel on its first five problem classes (MHA, groups of 8, two passes, passes of 8 and 4, groups of
     * 3), each run merging its own splits, again, and through attention_merge, blocks in a shuffled order: the same
     * bits three times, float64's within 1e-2, every arrival counter back at zero.
     */
    @Test
    void theDecodeKernelMergesItsSplitsAsAttentionMergeDoes(@TempDir Path work) throws IOException, InterruptedException {
        String out = emulate(work, "decode", "5");
        assertThat(out).contains("EMU decode PASSED").doesNotContain("FAIL");
        assertThat(out.lines().filter(l -> l.startsWith("EMU decode rows") && l.contains("again same, attention_merge "
                + "same, counters zero ok")).count()).isEqualTo(5);
    }

    /** Runs {@code run_emu.sh args} with its build in {@code work}; its output, after checking that it exited 0. */
    static String emulate(Path work, String... args) throws IOException, InterruptedException {
        assumeTrue(onPath("g++") && onPath("python3"), "g++ and python3 are needed to build the emulator");
        Path script = Path.of("src/test/emu/run_emu.sh").toAbsolutePath();
        assertThat(script).exists();
        List<String> command = new ArrayList<>(List.of("bash", script.toString()));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
        pb.environment().put("TMPDIR", work.toString());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(5, TimeUnit.MINUTES)).as("emulator finished").isTrue();
        System.out.print(out);
        assertThat(p.exitValue()).as(out).isZero();
        return out;
    }

    private static boolean onPath(String command) {
        String path = System.getenv("PATH");
        if (path == null) {
            return false;
        }
        for (String dir : path.split(java.io.File.pathSeparator)) {
            if (Files.isExecutable(Path.of(dir, command))) {
                return true;
            }
        }
        return false;
    }
}
