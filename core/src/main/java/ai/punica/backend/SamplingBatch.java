package ai.punica.backend;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The input of {@link Backend#sample}: one {@link SamplingRow} per logit row, and each row's penalty
 * tokens as a compact list (CSR): row r's are {@code penaltyTokens[penaltyStarts[r] .. penaltyStarts[r + 1])},
 * each token at most once, with {@code penaltyCounts} = how often it was generated. The repetition
 * penalty applies to every listed token (prompt and output: list a prompt-only token with count 0),
 * presence and frequency penalties to those with a count above 0.
 */
public record SamplingBatch(List<SamplingRow> rows, int[] penaltyStarts, int[] penaltyTokens, int[] penaltyCounts) {

    public SamplingBatch {
        rows = List.copyOf(rows);
        if (penaltyStarts.length != rows.size() + 1 || penaltyStarts[0] != 0
                || penaltyTokens.length != penaltyStarts[rows.size()] || penaltyCounts.length != penaltyTokens.length) {
            throw new IllegalArgumentException("penalty lists of " + rows.size() + " rows need " + (rows.size() + 1)
                    + " starts from 0 and as many tokens as counts as the last start; got " + penaltyStarts.length
                    + " starts, " + penaltyTokens.length + " tokens, " + penaltyCounts.length + " counts");
        }
        for (int r = 0; r < rows.size(); r++) {
            if (penaltyStarts[r + 1] < penaltyStarts[r]) {
                throw new IllegalArgumentException("penaltyStarts decrease at row " + r);
            }
        }
    }

    public int size() {
        return rows.size();
    }

    public SamplingRow row(int r) {
        return rows.get(r);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Rows in order, each followed by its penalty tokens. */
    public static final class Builder {
        private final List<SamplingRow> rows = new ArrayList<>();
        private int[] starts = new int[9];
        private int[] tokens = new int[16];
        private int[] counts = new int[16];
        private int size;

        public Builder row(SamplingRow row) {
            rows.add(row);
            if (rows.size() + 1 > starts.length) {
                starts = Arrays.copyOf(starts, starts.length * 2);
            }
            starts[rows.size()] = size;
            return this;
        }

        /** A penalty token of the row added last. */
        public Builder penalty(int token, int count) {
            if (rows.isEmpty()) {
                throw new IllegalStateException("penalty token " + token + " before any row");
            }
            if (size == tokens.length) {
                tokens = Arrays.copyOf(tokens, size * 2);
                counts = Arrays.copyOf(counts, size * 2);
            }
            tokens[size] = token;
            counts[size] = count;
            size++;
            starts[rows.size()] = size;
            return this;
        }

        public SamplingBatch build() {
            return new SamplingBatch(rows, Arrays.copyOf(starts, rows.size() + 1), Arrays.copyOf(tokens, size),
                    Arrays.copyOf(counts, size));
        }
    }
}
