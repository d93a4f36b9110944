package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The host side of the tensor-core attention kernel that needs no GPU: the tile table (every query row in exactly
 * one tile of its own sequence, within the shape-only table length) and the rows per tile.
 */
class TensorCoreTilesTest {

    @Test
    void rowsPerTileHoldEveryQueryHeadOfAKvHead() {
        assertThat(PagedAttention.tensorCoreRowsPerTile(new AttentionShape(32, 32, 128, 1, 0))).isEqualTo(64);
        assertThat(PagedAttention.tensorCoreRowsPerTile(new AttentionShape(32, 8, 128, 1, 0))).isEqualTo(16);
        assertThat(PagedAttention.tensorCoreRowsPerTile(new AttentionShape(6, 2, 64, 1, 0))).isEqualTo(21);
        assertThat(PagedAttention.tensorCoreRowsPerTile(new AttentionShape(16, 1, 64, 1, 0))).isEqualTo(4);
    }

    @Test
    void tilesCoverEveryRowOnceWithinTheTableLength() {
        SplittableRandom rng = new SplittableRandom(5);
        for (int trial = 0; trial < 500; trial++) {
            int seqs = 1 + rng.nextInt(12);
            int rowsPerTile = new int[] {4, 8, 16, 21, 64}[rng.nextInt(5)];
            int[] queryStarts = new int[seqs + 1];
            for (int s = 0; s < seqs; s++) {
                // Sequences without rows, single rows, and multiples of the tile height plus or minus one.
                int n = switch (rng.nextInt(4)) {
                    case 0 -> 0;
                    case 1 -> 1;
                    case 2 -> rowsPerTile * (1 + rng.nextInt(3)) + rng.nextInt(3) - 1;
                    default -> rng.nextInt(300);
                };
                queryStarts[s + 1] = queryStarts[s] + n;
            }
            int rows = queryStarts[seqs];
            int length = PagedAttention.tensorCoreTableLength(rows, seqs, rowsPerTile);
            int[] tiles = PagedAttention.tensorCoreTiles(queryStarts, seqs, rowsPerTile, length);
            assertThat(tiles).hasSize(2 * length);
            int[] covered = new int[rows];
            boolean unusedSeen = false;
            for (int t = 0; t < length; t++) {
                int seq = tiles[2 * t];
                if (seq < 0) {
                    unusedSeen = true;
                    continue;
                }
                assertThat(unusedSeen).as("unused entries only at the end").isFalse();
                int first = tiles[2 * t + 1];
                assertThat(first).isBetween(queryStarts[seq], queryStarts[seq + 1] - 1);
                assertThat((first - queryStarts[seq]) % rowsPerTile).as("tiles start at multiples of the tile height")
                        .isZero();
                for (int r = first; r < Math.min(first + rowsPerTile, queryStarts[seq + 1]); r++) {
                    covered[r]++;
                }
            }
            for (int r = 0; r < rows; r++) {
                assertThat(covered[r]).as("row " + r + " of " + rows + " in trial " + trial).isEqualTo(1);
            }
        }
    }

    @Test
    void eachSequenceStartsWithItsLastTile() {
        int[] tiles = PagedAttention.tensorCoreTiles(new int[] {0, 130, 131}, 2, 64, 5);
        assertThat(tiles).containsExactly(0, 128, 0, 64, 0, 0, 1, 130, -1, 0);
    }

    @Test
    void mostQueryRowsIsTheLongestSequence() {
        AttentionBatch batch = new AttentionBatch(new int[] {0, 1, 38, 38, 40}, new int[] {5, 40, 9, 2},
                new int[] {0, 1, 3, 4, 5}, new int[] {0, 1, 2, 3, 4}, new int[40], 16);
        assertThat(PagedAttention.mostQueryRows(batch)).isEqualTo(37);
    }
}
