package ai.punica.backend;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The input of {@link Backend#sample}: one {@link SamplingRow} per logit row, and two compact lists (CSR)
 * per row.
 * <ul>
 *   <li>Penalty tokens: row r's are {@code penaltyTokens[penaltyStarts[r] .. penaltyStarts[r + 1])}, each
 *       token at most once, with {@code penaltyCounts} = how often it was generated. The repetition
 *       penalty applies to every listed token (prompt and output: list a prompt-only token with count 0),
 *       presence and frequency penalties to those with a count above 0.</li>
 *   <li>Logit biases: row r's are {@code biasTokens[biasStarts[r] .. biasStarts[r + 1])}, each token at
 *       most once, {@code biasValues} added to their logits before the penalties (OpenAI's
 *       {@code logit_bias}; {@code -∞} bans a token, as vLLM's {@code min_tokens} bans end-of-sequence
 *       tokens). Log-probabilities stay those of the raw logits.</li>
 * </ul>
 */
public record SamplingBatch(List<SamplingRow> rows, int[] penaltyStarts, int[] penaltyTokens, int[] penaltyCounts,
                            int[] biasStarts, int[] biasTokens, float[] biasValues) {

    public SamplingBatch {
        rows = List.copyOf(rows);
        checkLists("penalty", rows.size(), penaltyStarts, penaltyTokens.length, penaltyCounts.length);
        checkLists("bias", rows.size(), biasStarts, biasTokens.length, biasValues.length);
    }

    /** A batch without logit biases. */
    public SamplingBatch(List<SamplingRow> rows, int[] penaltyStarts, int[] penaltyTokens, int[] penaltyCounts) {
        this(rows, penaltyStarts, penaltyTokens, penaltyCounts, new int[rows.size() + 1], new int[0], new float[0]);
    }

    private static void checkLists(String what, int rows, int[] starts, int tokens, int values) {
        if (starts.length != rows + 1 || starts[0] != 0 || tokens != starts[rows] || values != tokens) {
            throw new IllegalArgumentException(what + " lists of " + rows + " rows need " + (rows + 1)
                    + " starts from 0 and as many tokens as values as the last start; got " + starts.length
                    + " starts, " + tokens + " tokens, " + values + " values");
        }
        for (int r = 0; r < rows; r++) {
            if (starts[r + 1] < starts[r]) {
                throw new IllegalArgumentException(what + " starts decrease at row " + r);
            }
        }
    }

    public int size() {
        return rows.size();
    }

    public SamplingRow row(int r) {
        return rows.get(r);
    }

    /** Whether any row has a logit bias (backends skip the bias pass otherwise). */
    public boolean hasBiases() {
        return biasTokens.length > 0;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Rows in order, each followed by its penalty tokens and logit biases. */
    public static final class Builder {
        private final List<SamplingRow> rows = new ArrayList<>();
        private int[] starts = new int[9];
        private int[] tokens = new int[16];
        private int[] counts = new int[16];
        private int size;
        private int[] biasStarts = new int[9];
        private int[] biasTokens = new int[0];
        private float[] biasValues = new float[0];
        private int biasSize;

        public Builder row(SamplingRow row) {
            rows.add(row);
            if (rows.size() + 1 > starts.length) {
                starts = Arrays.copyOf(starts, starts.length * 2);
                biasStarts = Arrays.copyOf(biasStarts, biasStarts.length * 2);
            }
            starts[rows.size()] = size;
            biasStarts[rows.size()] = biasSize;
            return this;
        }

        /** A penalty token of the row added last. */
        public Builder penalty(int token, int count) {
            requireRow(token);
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

        /** A logit bias of the row added last (each token once per row). */
        public Builder bias(int token, float bias) {
            requireRow(token);
            if (biasSize == biasTokens.length) {
                biasTokens = Arrays.copyOf(biasTokens, Math.max(16, biasSize * 2));
                biasValues = Arrays.copyOf(biasValues, Math.max(16, biasSize * 2));
            }
            biasTokens[biasSize] = token;
            biasValues[biasSize] = bias;
            biasSize++;
            biasStarts[rows.size()] = biasSize;
            return this;
        }

        private void requireRow(int token) {
            if (rows.isEmpty()) {
                throw new IllegalStateException("token " + token + " before any row");
            }
        }

        public SamplingBatch build() {
            return new SamplingBatch(rows, Arrays.copyOf(starts, rows.size() + 1), Arrays.copyOf(tokens, size),
                    Arrays.copyOf(counts, size), Arrays.copyOf(biasStarts, rows.size() + 1),
                    Arrays.copyOf(biasTokens, biasSize), Arrays.copyOf(biasValues, biasSize));
        }
    }
}
