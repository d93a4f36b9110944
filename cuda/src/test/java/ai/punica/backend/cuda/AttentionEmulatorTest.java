package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The host emulation of attention_tc.cu (cuda/src/test/emu/run_emu.sh: the kernel's own source compiled with g++, warp
 * collectives emulated from the PTX fragment layouts) on its first three problem classes against a float64 reference,
 * so that the emulator keeps compiling with the kernel sources it includes and the kernel's index arithmetic is
 * checked on every machine without a GPU. Skipped where there is no g++ or python3.
 */
class AttentionEmulatorTest {
    @Test
    void theTensorCoreAttentionKernelMatchesFloat64OnTheHost(@TempDir Path work) throws IOException, InterruptedException {
        assumeTrue(onPath("g++") && onPath("python3"), "g++ and python3 are needed to build the emulator");
        Path script = Path.of("src/test/emu/run_emu.sh").toAbsolutePath();
        assertThat(script).exists();
        ProcessBuilder pb = new ProcessBuilder("bash", script.toString(), "3").redirectErrorStream(true);
        pb.environment().put("TMPDIR", work.toString());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(5, TimeUnit.MINUTES)).as("emulator finished").isTrue();
        System.out.print(out);
        assertThat(p.exitValue()).as(out).isZero();
        assertThat(out).contains("EMU PASSED").doesNotContain("FAIL");
        assertThat(out.lines().filter(l -> l.startsWith("EMU ctx")).count()).isEqualTo(3);
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
