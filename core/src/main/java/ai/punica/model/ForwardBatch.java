package ai.punica.model;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.Segments;

/**
 * What one forward pass computes: {@code tokens[r]} at {@code positions[r]} for every row r, rows
 * grouped by sequence (for attention) and sequences grouped by adapter (for SGMV), and the rows whose
 * next-token logits are wanted, ascending.
 *
 * @param lastLayerRows when non-null, a copy of this batch restricted to {@code logitRows}: the last
 *                      layer computes only those rows (its other rows feed nothing but the KV cache,
 *                      which is written before attention)
 */
public record ForwardBatch(int[] tokens, int[] positions, AttentionBatch attention, Segments segments,
                           int[] logitRows, ForwardBatch lastLayerRows) {

    public int rows() {
        return tokens.length;
    }

    /**
     * The batch the last layer needs when each sequence wants logits of at most its last row: one row
     * per such sequence, sequences with no logit row get no query rows. Returns null when that does not
     * apply (some sequence wants logits of an inner row) or nothing would be saved.
     */
    public static ForwardBatch restrictToLogitRows(int[] tokens, int[] positions, AttentionBatch attention,
                                                   Segments segments, int[] logitRows) {
        if (logitRows.length == tokens.length) {
            return null;
        }
        int numSeqs = attention.numSequences();
        int[] queryStarts = new int[numSeqs + 1];
        int next = 0;
        for (int s = 0; s < numSeqs; s++) {
            queryStarts[s] = next;
            int lastRow = attention.queryStarts()[s + 1] - 1;
            boolean wanted = next < logitRows.length && logitRows[next] == lastRow
                    && lastRow >= attention.queryStarts()[s];
            if (next < logitRows.length && logitRows[next] < lastRow && logitRows[next] >= attention.queryStarts()[s]) {
                return null; // an inner row wants logits
            }
            if (wanted) {
                next++;
            }
        }
        if (next != logitRows.length) {
            return null;
        }
        queryStarts[numSeqs] = next;
        int[] rowTokens = new int[next];
        int[] rowPositions = new int[next];
        int[] rowSlots = new int[next];
        for (int i = 0; i < next; i++) {
            rowTokens[i] = tokens[logitRows[i]];
            rowPositions[i] = positions[logitRows[i]];
            rowSlots[i] = attention.slotMapping()[logitRows[i]];
        }
        // Re-derive adapter segments over the kept rows: a kept row stays in its original segment.
        int[] segStarts = new int[segments.count() + 1];
        int[] segSlots = new int[segments.count()];
        int segCount = 0;
        int row = 0;
        for (int seg = 0; seg < segments.count(); seg++) {
            int begin = row;
            while (row < next && logitRows[row] < segments.starts()[seg + 1]) {
                row++;
            }
            if (row > begin) {
                segStarts[segCount] = begin;
                segSlots[segCount] = segments.slots()[seg];
                segCount++;
            }
        }
        segStarts[segCount] = next;
        Segments kept = new Segments(java.util.Arrays.copyOf(segStarts, segCount + 1),
                java.util.Arrays.copyOf(segSlots, segCount));
        AttentionBatch keptAttention = new AttentionBatch(queryStarts, attention.contextLens(),
                attention.pageTableStarts(), attention.pageTables(), rowSlots, attention.pageSize());
        int[] identity = new int[next];
        for (int i = 0; i < next; i++) {
            identity[i] = i;
        }
        return new ForwardBatch(rowTokens, rowPositions, keptAttention, kept, identity, null);
    }
}
