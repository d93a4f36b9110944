package ai.punica.backend;

/**
 * The sequences of one step as attention sees them. Rows of the step's activations are grouped by
 * sequence: sequence s owns rows {@code [queryStarts[s], queryStarts[s+1])}. After this step's keys
 * are appended, sequence s holds {@code contextLens[s]} tokens, so its last query row is at position
 * {@code contextLens[s] - 1} and row j of the sequence is at position
 * {@code contextLens[s] - (queryStarts[s+1] - queryStarts[s]) + (j - queryStarts[s])}; causal.
 * Token t of sequence s lives in page {@code pageTables[pageTableStarts[s] + t / pageSize]} at offset
 * {@code t % pageSize}; {@code queryStarts} and {@code pageTableStarts} have one entry per sequence plus
 * a closing one. {@code slotMapping[row]} = page · pageSize + offset where the row's new key and
 * value are written.
 */
public record AttentionBatch(int[] queryStarts, int[] contextLens, int[] pageTableStarts, int[] pageTables,
                             int[] slotMapping, int pageSize) {

    public int numSequences() {
        return contextLens.length;
    }

    public int numRows() {
        return queryStarts[queryStarts.length - 1];
    }

    /** Position (0-based) of a query row of sequence s. */
    public int position(int s, int row) {
        int queryCount = queryStarts[s + 1] - queryStarts[s];
        return contextLens[s] - queryCount + (row - queryStarts[s]);
    }

    /** Slot (page · pageSize + offset) that holds token t of sequence s. */
    public int slotOf(int s, int t) {
        return pageTables[pageTableStarts[s] + t / pageSize] * pageSize + t % pageSize;
    }
}
