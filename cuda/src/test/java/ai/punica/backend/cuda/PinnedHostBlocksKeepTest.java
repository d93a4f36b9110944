package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/**
 * When a page-locked adapter block given back is kept for reuse (CPU: the rule alone; the blocks themselves are
 * exercised on a GPU by {@code CudaPinnedAdapterTest}). Sizes in MB of a rank-16 Llama-7B adapter: 80.
 */
class PinnedHostBlocksKeepTest {
    @Test
    void aHostTierAtItsHighWaterMarkKeepsEveryBlockItGivesBack() {
        long peak = 100 * 80; // a host tier that held 100 adapters at once
        // Evicting one of the 100: 99 held, none kept.
        assertThat(PinnedHostBlocks.keeps(80, 99 * 80, 0, peak)).isTrue();
        // Evicting the rest one by one: each fits beside what is held and kept.
        assertThat(PinnedHostBlocks.keeps(80, 0, 99 * 80, peak)).isTrue();
    }

    @Test
    void blocksBeyondTheMostEverHeldAreFreed() {
        long peak = 10 * 80;
        // 10 held at the peak and a block of another size kept beside them (taken from the driver meanwhile):
        // giving one of the 80s back would hold more page-locked memory than the tier ever needed.
        assertThat(PinnedHostBlocks.keeps(80, 9 * 80, 160, peak)).isFalse();
        assertThat(PinnedHostBlocks.keeps(80, 9 * 80, 0, peak)).as("nothing else kept").isTrue();
        assertThat(PinnedHostBlocks.keeps(1, 0, 0, 0)).as("nothing ever held: nothing kept").isFalse();
    }
}
