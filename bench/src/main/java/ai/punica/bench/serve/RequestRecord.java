package ai.punica.bench.serve;

/**
 * What happened to one request. Times are seconds from the run's start. {@code chunkSeconds} holds the arrival
 * time of every streamed chunk that carried text: the first is the first token, and their gaps are the
 * inter-token latencies (a chunk may carry more than one token, when the server coalesces what a slow reader
 * has not taken yet, and tokens that decode to no text send none; the OpenAI stream does not say how many, which
 * is why TPOT is computed from the token count instead). A request whose tokens all decoded to no text has the
 * time of its finish chunk as its only one.
 *
 * @param sentSeconds    when the request was sent
 * @param promptTokens   usage.prompt_tokens from the server (−1 if it sent no usage)
 * @param outputTokens   usage.completion_tokens, else the number of text chunks
 * @param errorKind      null on success; else http_NNN, connect, timeout, stream_error, incomplete, io,
 *                       interrupted, client (an unexpected failure in the benchmark's client)
 */
public record RequestRecord(int index, String model, double scheduledSeconds, double sentSeconds,
                            double[] chunkSeconds, double endSeconds, int promptTokens, int outputTokens,
                            String errorKind, String errorMessage) {

    public RequestRecord {
        chunkSeconds = chunkSeconds.clone();
    }

    @Override
    public double[] chunkSeconds() {
        return chunkSeconds.clone();
    }

    public boolean ok() {
        return errorKind == null;
    }

    /** Time to first token: first text chunk − sent; NaN when no text came. */
    public double ttft() {
        return chunkSeconds.length == 0 ? Double.NaN : chunkSeconds[0] - sentSeconds;
    }

    /** End-to-end latency: last byte − sent. */
    public double e2e() {
        return endSeconds - sentSeconds;
    }

    /** Time per output token after the first: (end − first token) / (output tokens − 1); NaN below 2 tokens. */
    public double tpot() {
        return outputTokens < 2 || chunkSeconds.length == 0 ? Double.NaN
                : (endSeconds - chunkSeconds[0]) / (outputTokens - 1);
    }

    /** Gaps between consecutive text chunks. */
    public double[] interTokenLatencies() {
        double[] gaps = new double[Math.max(0, chunkSeconds.length - 1)];
        for (int i = 0; i < gaps.length; i++) {
            gaps[i] = chunkSeconds[i + 1] - chunkSeconds[i];
        }
        return gaps;
    }
}
