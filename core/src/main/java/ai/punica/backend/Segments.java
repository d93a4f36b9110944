package ai.punica.backend;

/**
 * Rows of a step grouped by adapter, as SGMV reads them: segment i is rows
 * {@code [starts[i], starts[i+1])} and uses adapter slot {@code slots[i]}; slot -1 means no adapter
 * (the segment is skipped). Rows are sorted so that each adapter's rows are contiguous.
 */
public record Segments(int[] starts, int[] slots) {
    public Segments {
        if (starts.length != slots.length + 1) {
            throw new IllegalArgumentException("starts has " + starts.length + " entries for " + slots.length + " segments");
        }
    }

    public int count() {
        return slots.length;
    }

    public int rows() {
        return starts[starts.length - 1];
    }
}
