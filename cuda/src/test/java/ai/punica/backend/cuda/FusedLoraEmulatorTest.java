package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The host emulation of sgmv.cu's fused decode LoRA kernel ({@code run_emu.sh fused}: the kernel's own source compiled
 * with g++, each cluster's blocks run together with the cluster barrier and distributed shared memory emulated), both
 * kernels (clusters of 4 and of 8), on its four problem classes (a q|k|v-like group with a row without adapter, ranks
 * 64 and 4 with padded strides and a slot that adapts nothing, inputs not a multiple of 8 with rank 12, a 2,752-wide
 * input): the added part equals a float64 reference that rounds as the kernel does, nothing else changes, a second run
 * gives the same bits. Skipped where there is no g++ or python3.
 */
class FusedLoraEmulatorTest {
    @Test
    void theFusedDecodeLoraKernelMatchesFloat64OnTheHost(@TempDir Path work) throws IOException, InterruptedException {
        String out = AttentionEmulatorTest.emulate(work, "fused");
        assertThat(out).contains("EMU fused PASSED").doesNotContain("FAIL");
        assertThat(out.lines().filter(l -> l.startsWith("EMU fused rows") && l.endsWith("second run same ok")).count())
                .isEqualTo(8);
    }
}
