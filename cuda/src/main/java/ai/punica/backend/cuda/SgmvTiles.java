package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.KernelConstants.SGMV_TILE_ROWS;
import static ai.punica.backend.cuda.KernelConstants.TC_ROWS;

import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import java.util.ArrayDeque;
import java.util.Arrays;

/**
 * The tile tables of SGMV launches: every segment that names a slot cut into tiles of at most
 * {@value KernelConstants#SGMV_TILE_ROWS} rows (one row per tile in decode-sized steps; {@value KernelConstants#TC_ROWS}
 * for the tensor-core kernels), padded with empty
 * tiles to a count fixed by shapes, so that a launch's grid does not depend on the segments (CUDA graph rule 1).
 * The tables of recent steps are kept by {@link Segments} identity: all projections of all layers of a step
 * share one array (and one upload).
 */
final class SgmvTiles {
    private record Table(Segments segments, int count, int height, int[] tiles) {
    }

    /** Steps of up to this many tiles take row tiles whatever their segments' lengths (within {@link #rowTilesUpTo}). */
    static final int ROW_TILES_ALWAYS = 64;

    private final ArrayDeque<Table> recent = new ArrayDeque<>();
    /** Steps of up to this many tiles cut segments into one-row tiles when every row fits a tile. */
    private final int rowTilesUpTo;
    /** Segments of at least this many rows run on tensor cores ({@link CudaOptions#sgmvTcMinRows}; 0: never). */
    private final int tensorCoreMinRows;
    /** The segments last asked about in {@link #allLong}, and the answer. */
    private Segments lastAsked;
    private boolean lastAllLong;

    /** Tiles with the default switches ({@link CudaOptions#ROW_TILES_UP_TO}, {@link CudaOptions#SGMV_TC_MIN_ROWS}). */
    SgmvTiles() {
        this(CudaOptions.ROW_TILES_UP_TO, CudaOptions.SGMV_TC_MIN_ROWS);
    }

    /**
     * Tiles with one-row tiles for steps of up to {@code rowTilesUpTo} tiles ({@link CudaOptions#rowTilesUpTo}), and
     * segments of {@code tensorCoreMinRows} rows or more ({@link CudaOptions#sgmvTcMinRows}) counted long.
     */
    SgmvTiles(int rowTilesUpTo, int tensorCoreMinRows) {
        this.rowTilesUpTo = rowTilesUpTo;
        this.tensorCoreMinRows = tensorCoreMinRows;
    }

    /**
     * How many tiles of at most 8 rows an SGMV launch has for {@code rows} rows and {@code slots} adapter
     * slots: a bound on Σ⌈len/8⌉ over the segments that name a slot, from shapes only. Each slot has at
     * most one segment (rows are grouped by adapter), so Σ⌈len/8⌉ ≤ Σ(len + 7)/8 ≤ (rows + 7·slots)/8, and
     * every tile has a row, so it is at most rows: a decode batch of 32 rows gets 32 tiles, a prefill chunk
     * of 2048 rows with 64 slots 312.
     */
    static int count(int rows, int slots) {
        return count(rows, slots, SGMV_TILE_ROWS);
    }

    /** {@link #count} for the tensor-core kernels' tiles of at most {@value KernelConstants#TC_ROWS} rows. */
    static int tensorCoreCount(int rows, int slots) {
        return count(rows, slots, TC_ROWS);
    }

    private static int count(int rows, int slots, int height) {
        return (int) Math.min(rows, ((long) rows + (long) (height - 1) * slots) / height);
    }

    /**
     * Whether {@link #tiles} cuts the segments into one-row tiles, which the shrink then runs with its
     * one-row kernels: decode-sized steps with room for a tile per row. A segment of many rows (one adapter
     * shared by the batch) then spreads over as many blocks as distinct adapters would, its weights re-read
     * from L2 rather than streamed by a few blocks. Above {@value #ROW_TILES_ALWAYS} tiles, a step whose adapted
     * rows are all in long segments (one adapter for the whole batch) takes the tensor-core kernels instead; one
     * with short segments beside long ones keeps the row tiles, since the two launches of each kind cost more than
     * the long segments save on tensor cores (H200, Llama-2-7B, 128-row decode step of the skewed workload:
     * 20.3 ms on both kinds against 18.4 ms on row tiles; one adapter: 16.4 ms on tensor cores against 18.1).
     */
    boolean rowTiles(Segments segments, int tileCount) {
        if (segments.rows() > tileCount || tileCount > rowTilesUpTo) {
            return false;
        }
        return tileCount <= ROW_TILES_ALWAYS || !allLong(segments);
    }

    /** Whether the tensor-core kernels are on and every adapted, non-empty segment is long enough for them. */
    private boolean allLong(Segments segments) {
        if (segments == lastAsked) {
            return lastAllLong;
        }
        boolean all = tensorCoreMinRows > 0;
        for (int i = 0; i < segments.count() && all; i++) {
            int rows = segments.starts()[i + 1] - segments.starts()[i];
            all = segments.slots()[i] < 0 || rows == 0 || rows >= tensorCoreMinRows;
        }
        lastAsked = segments;
        lastAllLong = all;
        return all;
    }

    /**
     * (first row, row count, slot) for every tile of every segment that names a slot, then (0, 0, 0) up to
     * {@code tileCount}: empty tiles, whose blocks exit. A slot that does not adapt this projection has rank 0
     * in the slot table and its blocks exit too, so the table depends on the segments alone and one array
     * serves every projection of a step (graph rule 3).
     */
    int[] tiles(String op, Segments segments, int tileCount) {
        return tiles(op, segments, tileCount, rowTiles(segments, tileCount) ? 1 : SGMV_TILE_ROWS);
    }

    /** The table of the tensor-core kernels: tiles of at most {@value KernelConstants#TC_ROWS} rows. */
    int[] tensorCoreTiles(String op, Segments segments, int tileCount) {
        return tiles(op, segments, tileCount, TC_ROWS);
    }

    private int[] tiles(String op, Segments segments, int tileCount, int height) {
        for (Table t : recent) {
            if (t.segments() == segments && t.count() == tileCount && t.height() == height) {
                return t.tiles();
            }
        }
        int[] tiles = new int[3 * tileCount];
        int k = 0;
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (slot < 0) {
                continue;
            }
            int end = segments.starts()[i + 1];
            for (int r = segments.starts()[i]; r < end; r += height) {
                if (k == tiles.length) {
                    throw ShapeChecks.fail(op, "segments " + Arrays.toString(segments.slots()) + " over "
                            + segments.rows() + " rows need more than " + tileCount + " tiles of " + height
                            + " rows: a slot has several segments; group each adapter's rows into one segment");
                }
                tiles[k++] = r;
                tiles[k++] = Math.min(height, end - r);
                tiles[k++] = slot;
            }
        }
        recent.addFirst(new Table(segments, tileCount, height, tiles));
        if (recent.size() > 8) {
            recent.removeLast();
        }
        return tiles;
    }
}
