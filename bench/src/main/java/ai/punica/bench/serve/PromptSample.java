package ai.punica.bench.serve;

/**
 * One request's text and lengths.
 *
 * @param prompt        the prompt text (for chat: the user message)
 * @param promptTokens  its length in tokens as counted by the benchmark's tokenizer, or −1 when not counted
 * @param maxTokens     the output length asked for (max_tokens)
 */
public record PromptSample(String prompt, int promptTokens, int maxTokens) {
}
