package ai.punica.server;

import ai.punica.cluster.GenerationService;
import ai.punica.engine.Completion;
import ai.punica.engine.Continuation;
import ai.punica.engine.EngineException;
import ai.punica.engine.FinishReason;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.PromptLogprob;
import ai.punica.engine.SamplingParams;
import ai.punica.engine.TokenDelta;
import ai.punica.engine.TokenLogprob;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.StringJoiner;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReferenceArray;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One HTTP generation request in flight: its engine requests (one per choice), the queue their
 * events arrive on, and the virtual thread that drains it into a response.
 *
 * <pre>
 *   engine thread ── listener.onToken/onFinish/onError ──► events (unbounded queue, never blocks)
 *                                                              │
 *   HTTP virtual thread ◄── take + drain ◄─────────────────────┘ ──► JSON body | SSE frames
 * </pre>
 */
final class GenerationExchange {
    private static final Logger log = LoggerFactory.getLogger(GenerationExchange.class);
    /** With nothing to send for this long, a stream writes an SSE comment to find out whether the client is still there. */
    private static final long KEEP_ALIVE_NANOS = TimeUnit.SECONDS.toNanos(10);

    private final GenerationService engine;
    private final ServerMetrics metrics;
    private final GenerationJob job;
    private final String id;
    private final long arrivalNanos;
    /** Written by the handler thread, read by stop() on another thread to cancel. */
    private final AtomicReferenceArray<String> engineIds;
    private final boolean[] finished;
    private final Completion[] completions;
    private final long[] lastTokenNanos;
    private final LinkedBlockingQueue<ChoiceEvent> events = new LinkedBlockingQueue<>();
    private long firstTokenNanos;
    private int open;
    /** Tokens a continued request generated elsewhere ({@link #continueFrom}); null for a new request. */
    private int[] continueFrom;
    /** A continuation of a request this engine handed to its router on preemption: it queues at the head. */
    private boolean returning;
    /** Whether each SSE event carries its token ids in a comment line (for a router, see {@link #withTokenIds}). */
    private boolean tokenIds;
    /** Whether a preemption is told to the client as a {@code punica.preempted} event (see {@link #migratable}). */
    private boolean migratable;
    private volatile boolean clientGone;
    /** A stream's echo with logprobs: what each choice has generated before its prompt went out with its logprobs. */
    private final Map<Integer, Pending> heldForEcho = new LinkedHashMap<>();
    /** A stream's echo with logprobs: the prompt logprobs each choice's engine request told (null until then). */
    private final List<PromptLogprob>[] promptLogprobs;
    private final boolean[] echoSent;

    GenerationExchange(GenerationService engine, ServerMetrics metrics, GenerationJob job, String id, long arrivalNanos) {
        this.engine = engine;
        this.metrics = metrics;
        this.job = job;
        this.id = id;
        this.arrivalNanos = arrivalNanos;
        int choices = job.choices();
        this.engineIds = new AtomicReferenceArray<>(choices);
        this.finished = new boolean[choices];
        this.completions = new Completion[choices];
        this.lastTokenNanos = new long[choices];
        @SuppressWarnings("unchecked")
        List<PromptLogprob>[] prompts = new List[choices];
        this.promptLogprobs = prompts;
        this.echoSent = new boolean[choices];
    }

    String id() {
        return id;
    }

    /**
     * Makes this exchange continue a request that generated {@code generated} elsewhere (a router's fail-over):
     * the engine re-prefills prompt + generated and the stream goes on with the next token, without the
     * opening chunks the client has already had. One choice only; a sampled request must carry its seed.
     */
    GenerationExchange continueFrom(int[] generated, boolean preempted) {
        this.continueFrom = generated.clone();
        this.returning = preempted;
        echoSent[0] = generated.length > 0; // a stream that sent tokens sent its echo with the first
        return this;
    }

    /**
     * Puts the token ids of each streamed event in an SSE comment line of the same event,
     * {@code ": tokens <choice> <id>,<id>..."}, so that a router knows exactly which tokens the client has
     * received if this server dies; clients ignore comment lines.
     */
    GenerationExchange withTokenIds() {
        this.tokenIds = true;
        return this;
    }

    /**
     * Hands the request to a router when it is preempted (KV pages ran out and no engine of this process took it):
     * the stream's last event, after the events of every token generated before it, is {@code event:
     * punica.preempted} with the continuation as its data, and the request leaves this engine; the router continues
     * it on another process, or here again, at the head of the queue (docs/cluster.md, "Migration across
     * processes"). A stream of one choice with token ids only.
     */
    GenerationExchange migratable() {
        // not with echo and logprobs: a continuation elsewhere has no prompt logprobs to echo
        this.migratable = tokenIds && job.stream() && engineIds.length() == 1
                && !(job.echo() != null && job.logprobs() >= 0);
        return this;
    }

    /**
     * Queues every choice with the engine, or none: if the engine refuses one (queue full, adapter
     * just unloaded), the ones already queued are cancelled and the refusal is thrown for a 4xx/5xx.
     */
    void submit() {
        if (continueFrom != null) {
            SamplingParams p = job.paramsOf(0);
            // One draw per sampled token: the generator's position after the tokens generated elsewhere.
            engine.resume(new Continuation(id, job.adapter(), job.promptOf(0), continueFrom, p,
                    p.seed() == null ? 0 : p.seed(), p.isGreedy() ? 0 : continueFrom.length, List.of()), listener(0), returning);
            engineIds.set(0, id);
            open++;
            return;
        }
        for (int i = 0; i < engineIds.length(); i++) {
            String engineId = engineIds.length() == 1 ? id : id + "-" + i;
            var request = new GenerationRequest(engineId, job.adapter(), job.promptOf(i), job.paramsOf(i));
            try {
                engine.submit(request, listener(i));
            } catch (EngineException e) {
                for (int k = 0; k < i; k++) {
                    engine.cancel(engineIds.get(k));
                }
                throw e;
            }
            engineIds.set(i, engineId);
            open++;
        }
    }

    /**
     * The answer to an engine refusal. A request whose adapter was unloaded while it waited is answered
     * as a request for an unknown model, with the same message.
     */
    private ApiException refusal(EngineException error) {
        return error.kind() == EngineException.Kind.NOT_FOUND && job.adapter() != null
                ? ApiException.modelNotFound(job.model()) : ApiException.from(error);
    }

    /** Cancels every choice still running (client gone, or shutdown past its deadline). */
    void cancel() {
        for (int i = 0; i < engineIds.length(); i++) {
            String engineId = engineIds.get(i);
            if (engineId != null && !finished[i]) {
                engine.cancel(engineId);
            }
        }
    }

    /**
     * The client closed its connection: the engine stops generating for it (vLLM aborts such requests
     * too), and whatever was produced is not sent.
     */
    void clientGone() {
        clientGone = true;
        cancel();
    }

    private GenerationListener listener(int choice) {
        return new GenerationListener() {
            @Override
            public void onToken(TokenDelta delta) {
                events.add(new ChoiceEvent.Token(choice, delta, System.nanoTime()));
            }

            @Override
            public void onPromptLogprobs(List<PromptLogprob> logprobs) {
                if (job.stream() && job.echo() != null && job.logprobs() >= 0) {
                    events.add(new ChoiceEvent.Prompt(choice, logprobs));
                }
            }

            @Override
            public void onFinish(Completion completion) {
                events.add(new ChoiceEvent.Finished(choice, completion));
            }

            @Override
            public void onError(EngineException error) {
                events.add(new ChoiceEvent.Failed(choice, error));
            }

            @Override
            public boolean onPreempted(Continuation continuation) {
                if (migratable) {
                    events.add(new ChoiceEvent.Preempted(choice, continuation));
                }
                return migratable;
            }
        };
    }

    /**
     * Waits for every choice and returns them, or null if the client left before the end; an engine
     * failure of any choice fails the request.
     */
    Completion[] awaitAll() throws InterruptedException {
        try {
            while (open > 0) {
                EngineException error = apply(events.take(), null);
                if (error != null) {
                    cancel();
                    logDone("error: " + error.getMessage());
                    if (error.kind() == EngineException.Kind.INTERNAL) {
                        throw error; // logged with its stack trace by the handler
                    }
                    throw refusal(error);
                }
            }
        } catch (InterruptedException e) {
            cancel();
            logDone("interrupted");
            throw e;
        }
        if (clientGone) {
            logDone("client disconnected");
            return null;
        }
        for (Completion c : completions) {
            if (c.finishReason() == FinishReason.ABORT) {
                logDone("cancelled by shutdown");
                throw new EngineException(EngineException.Kind.UNAVAILABLE, null,
                        "The server is shutting down and cancelled this request; retry it.");
            }
        }
        logDone(null);
        return completions;
    }

    /**
     * Streams every choice as SSE frames: chat's role chunks first, then one chunk per choice for
     * whatever arrived together (tokens that the engine produced in one step, or while we were
     * writing, go out in one frame), the finishing chunk of each choice, the usage chunk if asked for,
     * and [DONE]. An engine error mid-stream is sent as an error frame, as vLLM does.
     */
    void stream(SseStream sse, ResponseBuilder responses) throws SseStream.ClientGone, InterruptedException {
        try {
            // The stream starts with the engine's first event (or after KEEP_ALIVE_NANOS of waiting), so a
            // request refused while queued (its adapter unloaded, say) still gets its HTTP status.
            ChoiceEvent waited = events.poll(KEEP_ALIVE_NANOS, TimeUnit.NANOSECONDS);
            if (waited instanceof ChoiceEvent.Failed failed) {
                apply(waited, null);
                cancel();
                logDone("error: " + failed.error().getMessage());
                throw refusal(failed.error());
            }
            if (continueFrom == null) { // a continued stream's client has had the opening chunks already
                for (Object chunk : responses.openingChunks()) {
                    sse.data(chunk);
                }
            }
            List<ChoiceEvent> batch = new ArrayList<>();
            while (open > 0) {
                if (clientGone) {
                    throw new SseStream.ClientGone("the client closed the connection");
                }
                ChoiceEvent first = waited != null ? waited : events.poll(KEEP_ALIVE_NANOS, TimeUnit.NANOSECONDS);
                waited = null;
                if (first == null) {
                    sse.comment("keep-alive");
                    continue;
                }
                batch.clear();
                batch.add(first);
                events.drainTo(batch);
                Map<Integer, Pending> pending = new LinkedHashMap<>();
                EngineException error = null;
                for (ChoiceEvent e : batch) {
                    if (e instanceof ChoiceEvent.Preempted p) {
                        // The tokens before it go out first: the router continues from exactly those. The
                        // request has left the engine; its stream ends with this event.
                        send(sse, responses, pending);
                        finished[p.choice()] = true; // nothing to cancel here when the router leaves
                        sse.named("punica.preempted", ContinuationJson.of(p.continuation(), id,
                                responses.created()));
                        logDone("handed to the router on preemption");
                        return;
                    }
                    error = error != null ? error : apply(e, pending);
                }
                send(sse, responses, pending);
                if (error != null) {
                    cancel();
                    sse.data(refusal(error).body());
                    sse.done();
                    logDone("error: " + error.getMessage());
                    return;
                }
            }
            if (job.includeUsage()) {
                sse.data(responses.usageChunk(responses.usage(completions)));
            }
            sse.done();
            logDone(null);
        } catch (SseStream.ClientGone e) {
            cancel();
            drainCancelled();
            logDone("client disconnected");
            throw e;
        } catch (InterruptedException e) {
            cancel();
            logDone("interrupted");
            throw e;
        }
    }

    /** Sends what the choices have gathered: text and token-id events, then finish chunks. */
    private void send(SseStream sse, ResponseBuilder responses, Map<Integer, Pending> pending)
            throws SseStream.ClientGone {
        for (var entry : pending.entrySet()) {
            Pending p = entry.getValue();
            int choice = entry.getKey();
            Object chunk;
            if (responses.echoesLogprobs() && !echoSent[choice]) {
                // held until the prompt's log-probabilities are known and the first token is there, which goes with
                // them as in vLLM (the engine tells them just before it; a request that ends first, with its completion)
                Pending held = heldForEcho.computeIfAbsent(choice, k -> new Pending());
                held.text.append(p.text);
                held.logprobs.addAll(p.logprobs);
                held.tokens.addAll(p.tokens);
                List<PromptLogprob> prompt = promptLogprobs[choice] != null ? promptLogprobs[choice]
                        : completions[choice] != null ? completions[choice].promptLogprobs() : null;
                if ((prompt == null || held.tokens.isEmpty()) && p.finish == null) {
                    continue;
                }
                held.finish = p.finish;
                p = held;
                heldForEcho.remove(choice);
                echoSent[choice] = true;
                chunk = responses.echoChunk(choice, prompt, p.text.toString(), p.logprobs);
            } else {
                chunk = !p.text.isEmpty() || !p.logprobs.isEmpty()
                        ? responses.chunk(entry.getKey(), p.text.toString(), p.logprobs, null) : null;
            }
            if (tokenIds && !p.tokens.isEmpty()) {
                StringJoiner ids = new StringJoiner(",", "tokens " + entry.getKey() + " ", "");
                p.tokens.forEach(t -> ids.add(Integer.toString(t)));
                sse.event(ids.toString(), chunk);
            } else if (chunk != null) {
                sse.data(chunk);
            }
            // The finish reason always gets a chunk of its own with an empty delta, as OpenAI sends it.
            if (p.finish != null) {
                sse.data(responses.chunk(entry.getKey(), "", null, p.finish));
            }
        }
    }

    /**
     * After a cancel, waits briefly for the engine's last events so the log and metrics count the
     * tokens that were generated before the client left.
     */
    private void drainCancelled() throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (open > 0) {
            ChoiceEvent e = events.poll(end - System.nanoTime(), TimeUnit.NANOSECONDS);
            if (e == null) {
                return;
            }
            apply(e, null);
        }
    }

    /** What one choice has to send after a drained batch. */
    private static final class Pending {
        final StringBuilder text = new StringBuilder();
        final List<TokenLogprob> logprobs = new ArrayList<>();
        final List<Integer> tokens = new ArrayList<>();
        FinishReason finish;
    }

    /** Records an event; returns the error it carries, if any. */
    private EngineException apply(ChoiceEvent event, Map<Integer, Pending> pending) {
        int choice = event.choice();
        Pending p = pending == null ? null : pending.computeIfAbsent(choice, k -> new Pending());
        switch (event) {
            case ChoiceEvent.Token t -> {
                TokenDelta d = t.delta();
                if (d.token() >= 0) {
                    if (firstTokenNanos == 0) {
                        firstTokenNanos = t.nanos();
                    }
                    if (lastTokenNanos[choice] != 0) {
                        metrics.observeInterTokenLatency((t.nanos() - lastTokenNanos[choice]) / 1e9);
                    }
                    lastTokenNanos[choice] = t.nanos();
                }
                if (p != null && !job.echoOnly()) { // echo with max_tokens 0: the engine's one token is not sent
                    if (d.token() >= 0) {
                        p.tokens.add(d.token());
                    }
                    p.text.append(d.text());
                    if (d.logprob() != null) {
                        p.logprobs.add(d.logprob());
                    }
                }
                return null;
            }
            case ChoiceEvent.Prompt prompt -> {
                promptLogprobs[choice] = prompt.logprobs();
                return null;
            }
            case ChoiceEvent.Finished f -> {
                Completion c = f.completion();
                completions[choice] = c;
                finished[choice] = true;
                open--;
                if (p != null) {
                    p.finish = job.finishOf(c.finishReason());
                }
                observe(c);
                return null;
            }
            case ChoiceEvent.Failed f -> {
                finished[choice] = true;
                open--;
                return f.error();
            }
            case ChoiceEvent.Preempted preempted -> {
                return null; // told to a streaming router in stream(); a whole response just waits
            }
        }
    }

    private void observe(Completion c) {
        metrics.countFinished(c.finishReason()); // abort included, as vLLM counts it
        if (c.firstTokenNanos() != 0 && c.completionTokens() > 1) {
            metrics.observeTimePerOutputToken((c.finishNanos() - c.firstTokenNanos()) / 1e9
                    / (c.completionTokens() - 1));
        }
    }

    /** One log line per request (never per token), and the request-level latency metrics. */
    private void logDone(String problem) {
        long now = System.nanoTime();
        int generated = 0;
        StringJoiner reasons = new StringJoiner(",");
        for (Completion c : completions) {
            if (c != null) {
                generated += c.completionTokens();
                reasons.add(c.finishReason().openAiName());
            }
        }
        if (firstTokenNanos != 0) {
            metrics.observeTimeToFirstToken((firstTokenNanos - arrivalNanos) / 1e9);
        }
        if (problem == null) {
            metrics.observeE2eLatency((now - arrivalNanos) / 1e9);
        }
        String ttft = firstTokenNanos == 0 ? "-" : String.format("%.1f", (firstTokenNanos - arrivalNanos) / 1e6);
        log.info("{} model={} n={} stream={} prompt_tokens={} completion_tokens={} ttft_ms={} latency_ms={} finish={}{}",
                id, job.model(), job.choices(), job.stream(), job.promptTokens(), generated, ttft,
                String.format("%.1f", (now - arrivalNanos) / 1e6), reasons.length() == 0 ? "-" : reasons,
                problem == null ? "" : " (" + problem + ")");
    }
}
