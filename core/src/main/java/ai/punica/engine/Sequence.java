package ai.punica.engine;

import ai.punica.kv.KvCacheManager.SequencePages;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A request inside the engine: its tokens so far (prompt, then generated), how many of them have keys
 * and values in the cache, its pages and its adapter slot. Engine thread only.
 */
final class Sequence {
    enum Status { WAITING, RUNNING, FINISHED }

    final GenerationRequest request;
    final GenerationListener listener;
    final long arrivalNanos;
    /** Arrival order, used to pick the newest request to preempt. */
    final long order;
    final Sampler.State samplerState;
    final OutputProcessor output;
    final SequencePages pages = new SequencePages();
    final List<TokenLogprob> logprobs = new ArrayList<>();
    /** prompt_logprobs by prompt index (entry 0 stays null); null when the request did not ask for them. */
    final PromptLogprob[] promptLogprobs;
    /** Prompt positions [0, this) whose logits have given their prompt_logprobs entry (kept across preemption). */
    int promptLogprobsDone;

    private int[] tokens;
    private int length;
    private final int promptLength;
    Status status = Status.WAITING;
    /** Tokens whose keys and values are in the cache. */
    int computed;
    /** Backend adapter slot while running: -1 for the base model. */
    int slot = -1;
    boolean holdsSlot;
    long firstTokenNanos;
    int preemptions;

    Sequence(GenerationRequest request, GenerationListener listener, long order, Sampler.State samplerState,
             OutputProcessor output) {
        this.request = request;
        this.listener = listener;
        this.order = order;
        this.arrivalNanos = System.nanoTime();
        this.samplerState = samplerState;
        this.output = output;
        this.promptLength = request.promptLength();
        this.tokens = Arrays.copyOf(request.promptTokens(), promptLength + Math.min(request.params().maxTokens(), 256));
        this.length = promptLength;
        this.promptLogprobs = request.params().promptLogprobs() >= 0 ? new PromptLogprob[promptLength] : null;
    }

    /**
     * How many of the next {@code chunk} rows need logits for prompt_logprobs: the positions from
     * {@link #promptLogitPosition} before the prompt's last token (whose logits sample the first output token).
     */
    int promptLogitRows(int chunk) {
        if (promptLogprobs == null) {
            return 0;
        }
        return Math.max(0, Math.min(computed + chunk, promptLength - 1) - promptLogitPosition());
    }

    /** The first position whose logits prompt_logprobs still needs in the next chunk. */
    int promptLogitPosition() {
        return Math.max(computed, promptLogprobsDone);
    }

    int length() {
        return length;
    }

    int promptLength() {
        return promptLength;
    }

    int generatedCount() {
        return length - promptLength;
    }

    int token(int i) {
        return tokens[i];
    }

    int lastToken() {
        return tokens[length - 1];
    }

    /** Tokens still to feed through the model before the next one can be sampled. */
    int pending() {
        return length - computed;
    }

    void append(int token) {
        if (length == tokens.length) {
            tokens = Arrays.copyOf(tokens, tokens.length * 2);
        }
        tokens[length++] = token;
    }

    int[] generatedTokens() {
        return Arrays.copyOfRange(tokens, promptLength, length);
    }

    String adapter() {
        return request.adapter();
    }
}
