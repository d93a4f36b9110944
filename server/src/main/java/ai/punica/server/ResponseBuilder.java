package ai.punica.server;

import ai.punica.engine.Completion;
import ai.punica.engine.FinishReason;
import ai.punica.engine.PromptLogprob;
import ai.punica.engine.TokenLogprob;
import ai.punica.server.GenerationJob.Endpoint;
import ai.punica.server.OpenAiJson.ChatChoice;
import ai.punica.server.OpenAiJson.ChatChunkChoice;
import ai.punica.server.OpenAiJson.ChatCompletion;
import ai.punica.server.OpenAiJson.ChatCompletionChunk;
import ai.punica.server.OpenAiJson.ChatDelta;
import ai.punica.server.OpenAiJson.ChatLogprobs;
import ai.punica.server.OpenAiJson.ChatMessage;
import ai.punica.server.OpenAiJson.ChatTokenLogprob;
import ai.punica.server.OpenAiJson.ChatTopLogprob;
import ai.punica.server.OpenAiJson.PromptLogprobEntry;
import ai.punica.server.OpenAiJson.TextChoice;
import ai.punica.server.OpenAiJson.TextCompletion;
import ai.punica.server.OpenAiJson.TextLogprobs;
import ai.punica.server.OpenAiJson.Usage;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Builds the JSON objects of one response, whole or as stream chunks, in the shape of the endpoint
 * that was called. Holds the per-choice {@code text_offset} of legacy completions logprobs, so one
 * instance serves one HTTP request.
 */
final class ResponseBuilder {
    /** vLLM reports -inf log-probabilities as -9999 (JSON has no infinity). */
    private static final float MIN_LOGPROB = -9999f;

    private final GenerationJob job;
    private final String id;
    private final long created;
    private final TokenText tokenText;
    private final int[] textOffsets;

    long created() {
        return created;
    }

    ResponseBuilder(GenerationJob job, String id, long created, TokenText tokenText) {
        this.job = job;
        this.id = id;
        this.created = created;
        this.tokenText = tokenText;
        this.textOffsets = new int[job.choices()];
    }

    Usage usage(Completion[] completions) {
        int generated = 0;
        for (Completion c : completions) {
            generated += job.echoOnly() ? 0 : c.completionTokens(); // echo with max_tokens 0 shows no token
        }
        return Usage.of(job.promptTokens(), generated);
    }

    /** The non-streaming response. */
    Object whole(Completion[] completions) {
        Usage usage = usage(completions);
        if (job.endpoint() == Endpoint.COMPLETIONS) {
            List<TextChoice> choices = new ArrayList<>();
            for (int i = 0; i < completions.length; i++) {
                Completion c = completions[i];
                List<TokenLogprob> generated = job.echoOnly() ? List.of() : c.logprobs();
                TextLogprobs logprobs = echoesLogprobs() ? echoedLogprobs(i, c.promptLogprobs(), generated)
                        : textLogprobs(i, generated);
                String text = job.echoOf(i) + (job.echoOnly() ? "" : c.text());
                choices.add(new TextChoice(i, text, logprobs, job.finishOf(c.finishReason()).openAiName(),
                        promptLogprobs(c.promptLogprobs())));
            }
            return new TextCompletion(id, job.endpoint().object, created, job.model(), choices, usage);
        }
        List<ChatChoice> choices = new ArrayList<>();
        for (int i = 0; i < completions.length; i++) {
            Completion c = completions[i];
            choices.add(new ChatChoice(i, new ChatMessage("assistant", c.text()), chatLogprobs(c.logprobs()),
                    c.finishReason().openAiName()));
        }
        return new ChatCompletion(id, job.endpoint().object, created, job.model(), choices, usage,
                completions.length == 0 ? null : promptLogprobs(completions[0].promptLogprobs()));
    }

    /**
     * Chunks sent before any token: chat announces each choice's role, as OpenAI and vLLM do; a
     * completion with {@code echo} starts each choice with its prompt.
     */
    List<Object> openingChunks() {
        List<Object> out = new ArrayList<>();
        if (job.endpoint() != Endpoint.CHAT) {
            // echo with logprobs: the prompt goes out with its log-probabilities when they are known (echoChunk)
            for (int i = 0; job.echo() != null && !echoesLogprobs() && i < job.choices(); i++) {
                out.add(new TextCompletion(id, "text_completion", created, job.model(),
                        List.of(new TextChoice(i, job.echoOf(i), null, null)), null));
            }
            return out;
        }
        for (int i = 0; i < job.choices(); i++) {
            out.add(chatChunk(new ChatChunkChoice(i, new ChatDelta("assistant", ""), null, null)));
        }
        return out;
    }

    /** One stream chunk for one choice; {@code finish} is null until its last chunk. */
    Object chunk(int choice, String text, List<TokenLogprob> logprobs, FinishReason finish) {
        String reason = finish == null ? null : finish.openAiName();
        if (job.endpoint() == Endpoint.COMPLETIONS) {
            TextChoice c = new TextChoice(choice, text, textLogprobs(choice, logprobs), reason);
            return new TextCompletion(id, "text_completion", created, job.model(), List.of(c), null);
        }
        // The last chunk of a choice carries an empty delta when it brings no text, like OpenAI's.
        ChatDelta delta = text.isEmpty() && finish != null ? new ChatDelta(null, null) : new ChatDelta(null, text);
        return chatChunk(new ChatChunkChoice(choice, delta, chatLogprobs(logprobs), reason));
    }

    /**
     * Whether this is a completion with {@code echo} and {@code logprobs}: its legacy logprobs arrays start with the
     * prompt's tokens, so a stream sends each choice's prompt once its log-probabilities are known (vLLM's
     * {@code prompt_logprobs}, which the engine tells before the first token), with what it has generated by then.
     */
    boolean echoesLogprobs() {
        return job.endpoint() == Endpoint.COMPLETIONS && job.echo() != null && job.logprobs() >= 0;
    }

    /** A stream's first chunk of a choice with echo and logprobs: the prompt, then the text generated so far. */
    Object echoChunk(int choice, List<PromptLogprob> prompt, String text, List<TokenLogprob> logprobs) {
        TextChoice c = new TextChoice(choice, job.echoOf(choice) + text, echoedLogprobs(choice, prompt, logprobs),
                null);
        return new TextCompletion(id, "text_completion", created, job.model(), List.of(c), null);
    }

    /** The extra chunk of {@code stream_options.include_usage}: no choices, the whole request's usage. */
    Object usageChunk(Usage usage) {
        if (job.endpoint() == Endpoint.COMPLETIONS) {
            return new TextCompletion(id, "text_completion", created, job.model(), List.of(), usage);
        }
        return new ChatCompletionChunk(id, "chat.completion.chunk", created, job.model(), List.of(), usage);
    }

    private ChatCompletionChunk chatChunk(ChatChunkChoice choice) {
        return new ChatCompletionChunk(id, "chat.completion.chunk", created, job.model(), List.of(choice), null);
    }

    /**
     * Legacy completions logprobs: parallel arrays; {@code text_offset} counts characters of the
     * choice's text before each token, continuing across stream chunks. Each {@code top_logprobs} entry holds the
     * sampled token and the {@code logprobs} most likely ones, k + 1 tokens when the sampled one is not among
     * them (as vLLM; OpenAI's API reference: the sampled token's log-probability always, so up to logprobs + 1).
     */
    private TextLogprobs textLogprobs(int choice, List<TokenLogprob> logprobs) {
        if (job.logprobs() < 0 || logprobs == null) {
            return null;
        }
        List<String> tokens = new ArrayList<>();
        List<Float> values = new ArrayList<>();
        List<Map<String, Float>> top = new ArrayList<>();
        List<Integer> offsets = new ArrayList<>();
        for (TokenLogprob lp : logprobs) {
            String text = tokenText.of(lp.token());
            tokens.add(text);
            values.add(clamp(lp.logprob()));
            // As vLLM: the sampled token first, then the k most likely (it is one of them, or the k+1-th entry)
            Map<String, Float> alternatives = new LinkedHashMap<>();
            alternatives.put(text, clamp(lp.logprob()));
            for (TokenLogprob.Alternative a : lp.top()) {
                if (a.token() != lp.token()) {
                    alternatives.putIfAbsent(tokenText.of(a.token()), clamp(a.logprob()));
                }
            }
            top.add(alternatives);
            offsets.add(textOffsets[choice]);
            textOffsets[choice] += text.length();
        }
        return new TextLogprobs(tokens, values, top, offsets);
    }

    /**
     * vLLM's legacy logprobs with {@code echo}: one entry per prompt token, then the generated ones ({@code
     * text_offset} running on over both). The first prompt token has null for its log-probability and alternatives;
     * the others show the prompt token's own log-probability, and as alternatives the prompt token first, then the
     * most likely tokens, {@code logprobs + 1} tokens in all (fewer when the prompt token is among the most likely),
     * as vLLM takes them from its prompt_logprobs entry.
     */
    private TextLogprobs echoedLogprobs(int choice, List<PromptLogprob> entries, List<TokenLogprob> generated) {
        int[] prompt = job.promptOf(choice);
        List<String> tokens = new ArrayList<>();
        List<Float> values = new ArrayList<>();
        List<Map<String, Float>> top = new ArrayList<>();
        List<Integer> offsets = new ArrayList<>();
        for (int p = 0; p < prompt.length; p++) {
            PromptLogprob lp = entries == null || p >= entries.size() ? null : entries.get(p);
            String text = tokenText.of(prompt[p]);
            tokens.add(text);
            if (lp == null) {
                values.add(null);
                top.add(null);
            } else {
                float own = clamp(lp.logprob());
                values.add(own);
                Map<String, Float> alternatives = new LinkedHashMap<>();
                alternatives.put(text, own);
                int shown = 1;
                for (TokenLogprob.Alternative a : lp.top()) {
                    if (shown > job.logprobs()) {
                        break;
                    }
                    if (a.token() != lp.token()) {
                        alternatives.put(tokenText.of(a.token()), clamp(a.logprob()));
                        shown++;
                    }
                }
                top.add(alternatives);
            }
            offsets.add(textOffsets[choice]);
            textOffsets[choice] += text.length();
        }
        TextLogprobs rest = textLogprobs(choice, generated == null ? List.of() : generated);
        tokens.addAll(rest.tokens());
        values.addAll(rest.tokenLogprobs());
        top.addAll(rest.topLogprobs());
        offsets.addAll(rest.textOffset());
        return new TextLogprobs(tokens, values, top, offsets);
    }

    private ChatLogprobs chatLogprobs(List<TokenLogprob> logprobs) {
        if (job.logprobs() < 0 || logprobs == null) {
            return null;
        }
        List<ChatTokenLogprob> content = new ArrayList<>();
        for (TokenLogprob lp : logprobs) {
            String text = tokenText.of(lp.token());
            // As vLLM: top_logprobs entries, the sampled token first and then the most likely others (so when the
            // sampled token is not among the k most likely, the k-th of them gives it its place)
            List<ChatTopLogprob> top = new ArrayList<>();
            if (job.logprobs() > 0) {
                top.add(new ChatTopLogprob(text, clamp(lp.logprob()), TokenText.utf8(text)));
            }
            for (TokenLogprob.Alternative a : lp.top()) {
                if (top.size() >= job.logprobs()) {
                    break;
                }
                if (a.token() != lp.token()) {
                    String alt = tokenText.of(a.token());
                    top.add(new ChatTopLogprob(alt, clamp(a.logprob()), TokenText.utf8(alt)));
                }
            }
            content.add(new ChatTokenLogprob(text, clamp(lp.logprob()), TokenText.utf8(text), top));
        }
        return new ChatLogprobs(content);
    }

    /**
     * vLLM's {@code prompt_logprobs}: null first, then per prompt token {token id: {logprob, rank, decoded_token}}
     * with the prompt token first and then the most likely tokens (ranks 1, 2, …; a prompt token among them
     * keeps its place and takes that rank, as vLLM's dict does); null when not asked for.
     */
    private List<Map<String, PromptLogprobEntry>> promptLogprobs(List<PromptLogprob> entries) {
        if (entries == null) {
            return null;
        }
        List<Map<String, PromptLogprobEntry>> out = new ArrayList<>(entries.size());
        for (PromptLogprob lp : entries) {
            if (lp == null) {
                out.add(null);
                continue;
            }
            Map<String, PromptLogprobEntry> position = new LinkedHashMap<>();
            position.put(Integer.toString(lp.token()), new PromptLogprobEntry(clamp(lp.logprob()), lp.rank(),
                    tokenText.of(lp.token())));
            for (int i = 0; i < lp.top().size(); i++) {
                TokenLogprob.Alternative a = lp.top().get(i);
                position.put(Integer.toString(a.token()), new PromptLogprobEntry(clamp(a.logprob()), i + 1,
                        tokenText.of(a.token())));
            }
            out.add(position);
        }
        return out;
    }

    private static float clamp(float logprob) {
        return Float.isNaN(logprob) || logprob < MIN_LOGPROB ? MIN_LOGPROB : logprob;
    }
}
