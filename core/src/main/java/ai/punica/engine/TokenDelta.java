package ai.punica.engine;

/**
 * One generated token as it streams: its id, the text that became final with it (may be empty: a
 * character split across tokens, or text held back because it may start a stop string), and its
 * log-probability when asked for.
 */
public record TokenDelta(int token, String text, TokenLogprob logprob) {
}
