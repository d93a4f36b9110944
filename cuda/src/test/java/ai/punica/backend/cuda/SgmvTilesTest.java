package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.Segments;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The tile tables of the tensor-core SGMV kernels (CPU: no device needed). */
class SgmvTilesTest {
    @Test
    void tensorCoreTilesCutSegmentsIntoSixtyFourRowTilesAndPadWithEmptyOnes() {
        // Segments of 130, 0, 1, 7 (no adapter) and 64 rows.
        Segments seg = new Segments(new int[] {0, 130, 130, 131, 138, 202}, new int[] {3, 1, 0, -1, 2});
        int count = SgmvTiles.tensorCoreCount(seg.rows(), 4);
        assertThat(count).isEqualTo(Math.min(202, (202 + 63 * 4) / 64));
        int[] tiles = new SgmvTiles().tensorCoreTiles("test", seg, count);
        assertThat(tiles).hasSize(3 * count);
        assertThat(tiles).startsWith(0, 64, 3, 64, 64, 3, 128, 2, 3, 130, 1, 0, 138, 64, 2);
        for (int i = 15; i < tiles.length; i++) {
            assertThat(tiles[i]).as("padding entry %d", i).isZero();
        }
    }

    @Test
    void theTensorCoreCountBoundsEveryGroupedStep() {
        // Each slot's rows in one segment: Σ⌈len/64⌉ never exceeds the count, whatever the lengths.
        SplittableRandom rng = new SplittableRandom(7);
        for (int trial = 0; trial < 200; trial++) {
            int slots = 1 + rng.nextInt(40);
            int segs = 1 + rng.nextInt(slots);
            int[] starts = new int[segs + 1];
            int[] slotOf = new int[segs];
            for (int i = 0; i < segs; i++) {
                starts[i + 1] = starts[i] + rng.nextInt(300);
                slotOf[i] = i;
            }
            Segments seg = new Segments(starts, slotOf);
            int count = SgmvTiles.tensorCoreCount(seg.rows(), slots);
            int[] tiles = new SgmvTiles().tensorCoreTiles("test", seg, count);
            int covered = 0;
            for (int t = 0; t < count; t++) {
                assertThat(tiles[3 * t + 1]).isBetween(0, KernelConstants.TC_ROWS);
                covered += tiles[3 * t + 1];
            }
            assertThat(covered).isEqualTo(seg.rows());
        }
    }

    @Test
    void anAdapterInSeveralSegmentsBeyondTheBoundIsRefused() {
        int[] starts = new int[66];
        for (int i = 0; i < 65; i++) {
            starts[i + 1] = i + 1;
        }
        Segments seg = new Segments(starts, new int[65]); // slot 0 in 65 one-row segments: 65 tiles, the bound 2
        int count = SgmvTiles.tensorCoreCount(seg.rows(), 1);
        assertThat(count).isEqualTo(2);
        assertThatThrownBy(() -> new SgmvTiles().tensorCoreTiles("sgmvShrink", seg, count))
                .hasMessageContaining("one segment");
    }

    /** Segments of the given lengths, slot i for segment i. */
    private static Segments segments(int... lengths) {
        int[] starts = new int[lengths.length + 1];
        int[] slots = new int[lengths.length];
        for (int i = 0; i < lengths.length; i++) {
            starts[i + 1] = starts[i] + lengths[i];
            slots[i] = i;
        }
        return new Segments(starts, slots);
    }

    @Test
    void decodeStepsOfUpTo64TilesAlwaysTakeRowTiles() {
        SgmvTiles tiles = new SgmvTiles(128, 16);
        int[] one = new int[64];
        java.util.Arrays.fill(one, 1);
        assertThat(tiles.rowTiles(segments(one), SgmvTiles.count(64, 64))).isTrue();
        // One adapter for 64 rows: a long segment, still row tiles at 64 tiles.
        assertThat(tiles.rowTiles(segments(64), 64)).isTrue();
        // More rows than tiles (a prefill chunk): never.
        assertThat(tiles.rowTiles(segments(200), SgmvTiles.count(200, 4))).isFalse();
    }

    @Test
    void aboveSixtyFourTilesOnlyStepsWithShortSegmentsTakeRowTiles() {
        SgmvTiles tiles = new SgmvTiles(128, 16);
        // 128 rows: one adapter (all long) goes to the tensor cores; a skewed mix (long and short) keeps row tiles.
        assertThat(tiles.rowTiles(segments(128), 128)).isFalse();
        assertThat(tiles.rowTiles(segments(64, 40, 24), 128)).isFalse();
        assertThat(tiles.rowTiles(segments(70, 30, 10, 5, 5, 4, 2, 1, 1), 128)).isTrue();
        // Segments without an adapter and empty ones do not count as short.
        assertThat(tiles.rowTiles(new Segments(new int[] {0, 100, 100, 128}, new int[] {0, 1, -1}), 128)).isFalse();
        // Distinct adapters: row tiles.
        int[] one = new int[128];
        java.util.Arrays.fill(one, 1);
        assertThat(tiles.rowTiles(segments(one), 128)).isTrue();
        // Past rowTilesUpTo, or with the tensor-core kernels off (0: nothing is long), as the switch says.
        assertThat(tiles.rowTiles(segments(one), 129)).isFalse();
        assertThat(new SgmvTiles(128, 0).rowTiles(segments(128), 128)).isTrue();
        assertThat(new SgmvTiles(64, 16).rowTiles(segments(70, 30, 10, 5, 5, 4, 2, 1, 1), 128)).isFalse();
    }
}
