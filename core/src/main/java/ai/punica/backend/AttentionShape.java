package ai.punica.backend;

/**
 * Head layout of one attention layer. Query head h reads KV head {@code h / (numHeads / numKvHeads)}
 * (grouped-query attention). {@code slidingWindow} 0 means full causal attention; otherwise a query at
 * position p sees keys at positions {@code (p - slidingWindow, p]}.
 */
public record AttentionShape(int numHeads, int numKvHeads, int headDim, float scale, int slidingWindow) {
    public AttentionShape {
        if (numHeads % numKvHeads != 0) {
            throw new IllegalArgumentException("numHeads " + numHeads + " is not a multiple of numKvHeads " + numKvHeads);
        }
    }

    public int qCols() {
        return numHeads * headDim;
    }

    public int kvCols() {
        return numKvHeads * headDim;
    }
}
