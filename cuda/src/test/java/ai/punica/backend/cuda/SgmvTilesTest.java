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
}
