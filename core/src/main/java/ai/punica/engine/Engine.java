package ai.punica.engine;

import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.Tensor;
import ai.punica.kv.KvCacheManager;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.AdapterUnavailableException;
import ai.punica.model.LlamaModel;
import ai.punica.tokenizer.Tokenizer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One engine per backend device. A single thread owns all mutable state (scheduler, KV pages, adapter
 * slots, sampler); other threads talk to it through a command queue and receive output through
 * {@link GenerationListener}s. Each iteration: the {@link Scheduler} plans a {@link StepPlan}, the
 * {@link ModelRunner} executes it on the backend, the {@link Sampler} (or the backend) picks each sampling
 * sequence's next token, and {@link #emit} hands it to the request's listener.
 */
public final class Engine implements AutoCloseable {
    private static final Logger log = LoggerFactory.getLogger(Engine.class);
    /** Steps kept for live views: a few seconds at GPU step rates, minutes on the CPU. */
    private static final int STEP_LOG_CAPACITY = 4096;

    private final LlamaModel model;
    private final Tokenizer tokenizer;
    private final AdapterManager adapters;
    private final EngineConfig config;
    private final KvCacheManager kvManager;
    private final Scheduler scheduler;
    private final ModelRunner runner;
    private final Sampler sampler = new Sampler();
    /** Whether the backend samples next to the logits (else the host does, from downloaded logits). */
    private final boolean deviceSampling;
    private final int[] eosTokenIds;
    private final int maxModelLen;
    private final int vocabSize;
    private final String baseModelName;

    private final LinkedBlockingQueue<Runnable> inbox = new LinkedBlockingQueue<>();
    private final Map<String, Sequence> live = new HashMap<>();
    private final AtomicInteger queued = new AtomicInteger();
    /** Adapters of the requests in the inbox, with counts: waiting too, for vllm:lora_requests_info. */
    private final ConcurrentHashMap<String, Integer> queuedAdapters = new ConcurrentHashMap<>();
    /** Requests accepted and not yet finished (queued in the inbox, waiting or running). */
    private final AtomicInteger unfinished = new AtomicInteger();
    private final SplittableRandom seeds = new SplittableRandom(System.nanoTime());
    private final Thread thread;
    private volatile boolean accepting = true;
    private volatile boolean stopping;
    private volatile EngineStats stats;
    private final StepLog stepLog;
    private volatile EngineLoad load;
    private volatile MigrationHook migrationHook;
    private long idleSinceNanos = System.nanoTime();
    private long migrationsOut;
    /** Preempted requests their owners took ({@link GenerationListener#onPreempted}): preemptions, as vLLM counts. */
    private long handedOut;
    private long order;
    private long promptTokens;
    private long generationTokens;
    private long steps;

    /**
     * @param baseModelName the id clients use for the base model (requests with adapter null)
     * @param eosTokenIds   tokens that end generation unless ignore_eos
     */
    public Engine(String baseModelName, LlamaModel model, Tokenizer tokenizer, AdapterManager adapters,
                  EngineConfig config, int[] eosTokenIds) {
        this.baseModelName = baseModelName;
        this.model = model;
        this.tokenizer = tokenizer;
        this.adapters = adapters;
        this.config = config;
        this.eosTokenIds = eosTokenIds.clone();
        this.vocabSize = model.config().vocabSize();
        this.deviceSampling = model.backend().supportsSampling();
        var c = model.config();
        int pages = KvCacheManager.pagesForBudget(config.kvCacheBytes(), config.pageSize(), c.numLayers(),
                c.numKvHeads(), c.headDim(), model.backend().kvBytesPerElement());
        this.kvManager = new KvCacheManager(pages, config.pageSize());
        this.runner = new ModelRunner(model, pages, config.pageSize());
        int modelLen = config.maxModelLen() > 0 ? config.maxModelLen() : c.maxPositionEmbeddings();
        // A sequence must fit the pool on its own, or preemption could never make room for it.
        this.maxModelLen = Math.min(modelLen, pages * config.pageSize());
        this.scheduler = new Scheduler(config, kvManager, adapters, this::migrateOut);
        this.stats = EngineStats.empty(pages, adapters.slotCount());
        this.stepLog = new StepLog(STEP_LOG_CAPACITY, adapters.slotCount());
        this.load = new EngineLoad(0, 0, config.maxRunning(), pages, config.pageSize(), Set.of(), idleSinceNanos, 0);
        this.thread = Thread.ofPlatform().name("punica-engine").daemon(true).unstarted(this::loop);
        thread.start();
        log.info("engine up: backend {} (sampling on the {}), {} KV pages of {} tokens ({} MiB), max model length {},"
                + " {} adapter slots", model.backend().name(), deviceSampling ? "backend" : "host", pages,
                config.pageSize(), config.kvCacheBytes() >> 20, maxModelLen, adapters.slotCount());
    }

    public String baseModelName() {
        return baseModelName;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    public AdapterManager adapters() {
        return adapters;
    }

    public int maxModelLen() {
        return maxModelLen;
    }

    /** The width of the model's logits (config.json's {@code vocab_size}): vLLM's count for logprobs -1. */
    public int vocabSize() {
        return vocabSize;
    }

    public EngineConfig config() {
        return config;
    }

    /**
     * The latest snapshot, published after each step and whenever an adapter leaves the running or waiting
     * set; the adapters of requests accepted but not yet seen by the engine thread count as waiting.
     */
    public EngineStats stats() {
        EngineStats s = stats;
        if (queuedAdapters.isEmpty() || s.waitingAdapters().containsAll(queuedAdapters.keySet())) {
            return s;
        }
        TreeSet<String> waitingAdapters = new TreeSet<>(s.waitingAdapters());
        waitingAdapters.addAll(queuedAdapters.keySet());
        return new EngineStats(s.running(), s.waiting(), s.kvCacheUsage(), s.kvPagesUsed(), s.kvPagesTotal(),
                s.runningAdapters(), waitingAdapters, s.loraSlots(), s.promptTokens(), s.generationTokens(),
                s.preemptions(), s.steps(), s.adapterLoads(), s.adapterEvictions());
    }

    /** The last steps, with their adapter segments, for live views (the console's engine view). */
    public StepLog stepLog() {
        return stepLog;
    }

    /** What placement reads: running and waiting requests, room, resident adapters, idleness. */
    public EngineLoad load() {
        return load;
    }

    /**
     * Sets where requests go instead of being preempted (null: always preempt). A cluster scheduler sets it
     * once, before requests arrive.
     */
    public void migrationHook(MigrationHook hook) {
        this.migrationHook = hook;
    }

    /** KV pages in use now (0 when idle: every request returns its pages). */
    public int kvPagesUsed() {
        return stats.kvPagesUsed();
    }

    /**
     * Queues a request. Checks it first on the caller's thread, so a bad request is refused at once
     * with an {@link EngineException} and nothing else is affected.
     */
    public void submit(GenerationRequest request, GenerationListener listener) {
        check(request);
        if (queued.incrementAndGet() > config.maxWaiting()) {
            queued.decrementAndGet();
            throw new EngineException(EngineException.Kind.OVERLOADED, null,
                    "too many requests are waiting (" + config.maxWaiting() + "); retry later");
        }
        unfinished.incrementAndGet();
        if (request.adapter() != null) {
            queuedAdapters.merge(request.adapter(), 1, Integer::sum);
        }
        inbox.add(() -> admit(request, listener));
    }

    /**
     * Accepts a request that began on another engine ({@link Continuation}): re-prefills its prompt and
     * generated tokens and goes on from the next token, reporting only new tokens to {@code listener}. Checks
     * it first on the caller's thread, as {@link #submit} does; a continuation is never refused for a full
     * queue (the scheduler that sends it has already found room here).
     */
    public void resume(Continuation continuation, GenerationListener listener) {
        resume(continuation, listener, false);
    }

    /**
     * As {@link #resume(Continuation, GenerationListener)}; {@code preempted}: the request was preempted here and
     * taken by its owner ({@link GenerationListener#onPreempted}), which found no other engine for it: it goes to
     * the head of the queue, where a request preempted here waits.
     */
    public void resume(Continuation continuation, GenerationListener listener, boolean preempted) {
        GenerationRequest request = continuation.request();
        check(request);
        int[] generated = continuation.generatedTokens();
        checkVocabulary("generated_tokens", generated);
        if (continuation.tokensLeft() < 1) {
            throw new InvalidRequestException("generated_tokens", generated.length
                    + " tokens generated already, max_tokens is " + request.params().maxTokens()
                    + ": nothing is left to generate");
        }
        if (continuation.totalTokens() >= maxModelLen) {
            throw new EngineException(EngineException.Kind.PROMPT_TOO_LONG, "generated_tokens",
                    "prompt + generated tokens (" + continuation.totalTokens() + ") leave no room to generate in "
                            + "this model's maximum context length of " + maxModelLen + " tokens.");
        }
        if (continuation.randomDraws() < 0 || continuation.randomDraws() > generated.length) {
            throw new InvalidRequestException("random_draws", "random_draws " + continuation.randomDraws()
                    + " must be between 0 and the number of generated tokens (" + generated.length + ")");
        }
        if (!continuation.logprobs().isEmpty() && continuation.logprobs().size() != generated.length) {
            throw new InvalidRequestException("logprobs", continuation.logprobs().size() + " logprobs for "
                    + generated.length + " generated tokens: send one per token, or none");
        }
        unfinished.incrementAndGet();
        inbox.add(() -> {
            var state = Sampler.State.resumed(request.params(), continuation.promptTokens(), continuation.seed(),
                    generated, continuation.randomDraws(), eosTokenIds);
            start(request, listener, state, generated, continuation.logprobs(), preempted);
        });
    }

    /**
     * The checks every request passes before it is queued (parameters, tokens, length, adapter), without
     * queuing it: a scheduler over engines checks a request it holds back in its own queue.
     */
    public void check(GenerationRequest request) {
        if (!accepting) {
            throw new EngineException(EngineException.Kind.UNAVAILABLE, null, "the server is shutting down");
        }
        request.params().validate();
        request.params().validateTokens(vocabSize);
        int promptLength = request.promptLength();
        if (promptLength == 0) {
            throw new InvalidRequestException("prompt", "the prompt is empty: it must contain at least one token");
        }
        checkVocabulary("prompt", request.promptTokens());
        if (promptLength >= maxModelLen) {
            throw new EngineException(EngineException.Kind.PROMPT_TOO_LONG, "prompt",
                    "This model's maximum context length is " + maxModelLen + " tokens. However, your prompt has "
                            + promptLength + " tokens, which leaves no room to generate. Shorten the prompt.");
        }
        if (request.adapter() != null) {
            try {
                adapters.resolve(request.adapter()); // on-demand: found in a source and read, or refused
            } catch (AdapterUnavailableException e) {
                throw new EngineException(e.missing() ? EngineException.Kind.NOT_FOUND
                        : EngineException.Kind.INVALID_REQUEST, "model", e.getMessage());
            }
        }
    }

    private void checkVocabulary(String field, int[] tokens) {
        for (int i = 0; i < tokens.length; i++) {
            int t = tokens[i];
            if (t < 0 || t >= vocabSize) {
                throw new InvalidRequestException(field, "token id " + t + " at position " + i
                        + " is outside the vocabulary [0, " + vocabSize + ")");
            }
        }
    }

    /** Submits and collects the whole output (tests, CLI). */
    public CompletableFuture<Completion> generate(GenerationRequest request) {
        CompletableFuture<Completion> future = new CompletableFuture<>();
        submit(request, GenerationListener.completing(future, delta -> { }));
        return future;
    }

    /** Cancels a request (client gone): its pages are freed at once and it finishes with ABORT. */
    public void cancel(String requestId) {
        inbox.add(() -> {
            Sequence s = live.get(requestId);
            if (s != null) {
                finish(s, FinishReason.ABORT, null);
            }
        });
    }

    /** Runs {@code action} on the engine thread between steps and waits for it (tests, admin). */
    public <T> T callOnEngineThread(java.util.function.Supplier<T> action) {
        CompletableFuture<T> f = new CompletableFuture<>();
        inbox.add(() -> {
            try {
                f.complete(action.get());
            } catch (RuntimeException e) {
                f.completeExceptionally(e);
            }
        });
        return f.join();
    }

    // ---- engine thread --------------------------------------------------------------------------

    private void admit(GenerationRequest request, GenerationListener listener) {
        queued.decrementAndGet();
        var state = new Sampler.State(request.params(), request.promptTokens(), seeds.nextLong(), eosTokenIds);
        if (start(request, listener, state, new int[0], List.of(), false)) {
            promptTokens += request.promptLength();
        }
        unqueueAdapter(request); // after start published the adapter as waiting, so no snapshot misses it
    }

    /**
     * Makes a sequence of a request and queues it. A continuation's generated tokens are appended (to be
     * re-prefilled) and replayed through the output processor, which so holds back what the first engine
     * held back, without sending anything again.
     */
    private boolean start(GenerationRequest request, GenerationListener listener, Sampler.State state,
                          int[] generated, List<TokenLogprob> logprobs, boolean first) {
        if (live.containsKey(request.id())) {
            unfinished.decrementAndGet();
            safely(listener, () -> listener.onError(new InvalidRequestException("id",
                    "a request with id " + request.id() + " is already running")));
            return false;
        }
        var output = new OutputProcessor(tokenizer.newIncrementalDecoder(request.params().skipSpecialTokens()),
                request.params().stop(), request.params().includeStopStrInOutput());
        Sequence s = new Sequence(request, listener, order++, state, output);
        for (int t : generated) {
            s.append(t);
            output.add(t, s.generatedCount() > request.params().minTokens());
        }
        s.logprobs.addAll(logprobs);
        live.put(request.id(), s);
        if (first) {
            scheduler.addFirst(s);
        } else {
            scheduler.add(s);
        }
        publishStatsIfAdaptersChanged(); // before the inbox count drops, so no snapshot misses the adapter
        return true;
    }

    /**
     * The scheduler's offer of its newest running request before preempting it: hands the request's
     * {@link Continuation} to the migration hook; when taken, the request leaves this engine silently.
     */
    private boolean migrateOut(Sequence s) {
        Continuation c = continuationOf(s);
        if (offer(s, c, migrationHook)) {
            return true;
        }
        // Preempted: its owner may take it at the state it could go on from elsewhere, or leave it queued here.
        boolean taken;
        try {
            taken = s.listener.onPreempted(c);
        } catch (RuntimeException e) {
            log.warn("the listener of {} failed on its preemption; it stays here", s.request.id(), e);
            taken = false;
        }
        if (taken) {
            live.remove(s.request.id());
            unfinished.decrementAndGet();
            handedOut++;
        }
        return taken;
    }

    private Continuation continuationOf(Sequence s) {
        return new Continuation(s.request.id(), s.adapter(), s.request.promptTokens(), s.generatedTokens(),
                s.request.params(), s.samplerState.seed(), s.samplerState.draws(), s.logprobs);
    }

    /** Offers {@code s} to {@code hook}; when taken, the request leaves this engine silently. */
    private boolean offer(Sequence s, Continuation c, MigrationHook hook) {
        if (hook == null || stopping) {
            return false;
        }
        boolean taken;
        try {
            taken = hook.offer(c, s.listener);
        } catch (RuntimeException e) {
            log.warn("migration of {} failed; it stays here", s.request.id(), e);
            return false;
        }
        if (taken) {
            live.remove(s.request.id());
            unfinished.decrementAndGet();
            migrationsOut++;
        }
        return taken;
    }

    /**
     * Offers a request of this engine, running or waiting, to {@code hook} between steps (a cluster moving it to a
     * busier engine: active consolidation); when taken it leaves this engine silently, its pages and adapter slot
     * returned. Completes with whether it moved (false when it has finished, or nobody took it).
     */
    public CompletableFuture<Boolean> handOver(String requestId, MigrationHook hook) {
        CompletableFuture<Boolean> moved = new CompletableFuture<>();
        inbox.add(() -> {
            Sequence s = live.get(requestId);
            boolean taken = false;
            if (s != null && s.status != Sequence.Status.FINISHED && offer(s, continuationOf(s), hook)) {
                scheduler.remove(s);
                publishStatsIfAdaptersChanged();
                taken = true;
            }
            moved.complete(taken);
        });
        return moved;
    }

    private void unqueueAdapter(GenerationRequest request) {
        if (request.adapter() != null) {
            queuedAdapters.computeIfPresent(request.adapter(), (k, n) -> n == 1 ? null : n - 1);
        }
    }

    /** Publishes at once when an adapter joined or left the running or waiting set (exact LoRA labels). */
    private void publishStatsIfAdaptersChanged() {
        if (scheduler.takeAdapterSetsChanged()) {
            publishStats();
        }
    }

    private void loop() {
        while (true) {
            try {
                drainInbox(!scheduler.hasWork());
                if (stopping && !scheduler.hasWork() && inbox.isEmpty()) {
                    break;
                }
                StepPlan plan = scheduler.plan();
                publishStatsIfAdaptersChanged();
                for (Scheduler.Rejected r : scheduler.drainRejected()) {
                    if (live.remove(r.sequence().request.id()) != null) {
                        unfinished.decrementAndGet();
                    }
                    r.sequence().status = Sequence.Status.FINISHED;
                    safely(r.sequence().listener, () -> r.sequence().listener.onError(
                            new EngineException(EngineException.Kind.NOT_FOUND, "model", r.message())));
                }
                if (plan == null) {
                    // Waiting on an adapter load or a slot: look at the inbox again shortly.
                    Runnable next = inbox.poll(2, TimeUnit.MILLISECONDS);
                    if (next != null) {
                        next.run();
                    }
                    publishStats();
                    continue;
                }
                long started = System.nanoTime();
                List<StepLog.Segment> segments = StepLog.segmentsOf(plan);
                runStep(plan);
                publishStats();
                EngineStats now = stats;
                stepLog.append(new StepLog.StepRecord(steps, System.currentTimeMillis(), System.nanoTime() - started,
                        segments, StepLog.sampledOf(plan), now.running(), now.waiting(), now.kvPagesUsed(),
                        now.kvPagesTotal()));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            } catch (RuntimeException | Error e) {
                log.error("engine step failed; failing the running requests", e);
                for (Sequence s : List.copyOf(scheduler.running())) {
                    fail(s, new EngineException(EngineException.Kind.INTERNAL, "internal error: " + e, e));
                }
            }
        }
        for (Sequence s : List.copyOf(live.values())) {
            finish(s, FinishReason.ABORT, null);
        }
        publishStats();
    }

    private void drainInbox(boolean block) throws InterruptedException {
        if (block) {
            Runnable first = inbox.poll(50, TimeUnit.MILLISECONDS);
            if (first == null) {
                return;
            }
            first.run();
        }
        Runnable r;
        while ((r = inbox.poll()) != null) {
            r.run();
        }
    }

    private void runStep(StepPlan plan) {
        if (deviceSampling) {
            runStepSamplingOnDevice(plan);
            return;
        }
        float[] logits = runner.download(runner.execute(plan));
        steps++;
        for (StepPlan.Entry e : plan.entries()) {
            Sequence s = e.sequence();
            addPromptLogprobs(e, logits);
            s.computed += e.chunk();
            if (e.logitRow() < 0 || s.status == Sequence.Status.FINISHED) {
                continue;
            }
            int offset = e.logitRow() * vocabSize;
            SamplingParams p = s.request.params();
            int token = sampler.sample(logits, offset, vocabSize, p, s.samplerState);
            TokenLogprob logprob = p.logprobs() >= 0
                    ? Sampler.logprobs(logits, offset, vocabSize, token, p.logprobs()) : null;
            emit(s, token, logprob);
        }
    }

    /**
     * The step with sampling on the backend: the logits stay there and only tokens and the log-probabilities
     * asked for come back. Each sampling sequence draws from its generator as on the host path (once
     * per token, not for greedy rows), so a seed gives the same tokens on both paths.
     */
    private void runStepSamplingOnDevice(StepPlan plan) {
        Tensor logits = runner.execute(plan);
        steps++;
        Sequence[] byRow = new Sequence[logits.rows()];
        boolean promptRows = false;
        for (StepPlan.Entry e : plan.entries()) {
            promptRows |= e.promptLogitCount() > 0;
        }
        if (promptRows) {
            // prompt_logprobs: their rows' log-softmax on the host, from the downloaded logits (rare requests)
            float[] host = runner.download(logits);
            for (StepPlan.Entry e : plan.entries()) {
                addPromptLogprobs(e, host);
            }
        }
        for (StepPlan.Entry e : plan.entries()) {
            Sequence s = e.sequence();
            s.computed += e.chunk();
            if (e.logitRow() >= 0 && s.status != Sequence.Status.FINISHED) {
                byRow[e.logitRow()] = s;
            }
        }
        if (byRow.length == 0) {
            return;
        }
        SamplingBatch.Builder batch = SamplingBatch.builder();
        for (Sequence s : byRow) {
            if (s == null) {
                batch.row(SamplingRow.GREEDY); // a row nobody reads
            } else {
                s.samplerState.addRow(s.request.params(), batch);
            }
        }
        List<SampledToken> sampled = model.backend().sample(logits, batch.build());
        for (int r = 0; r < byRow.length; r++) {
            Sequence s = byRow[r];
            if (s == null || s.status == Sequence.Status.FINISHED) {
                continue; // finished by an earlier row's listener
            }
            SampledToken t = sampled.get(r);
            emit(s, t.token(), s.request.params().logprobs() >= 0 ? Sampler.toTokenLogprob(t) : null);
        }
    }

    /**
     * The prompt_logprobs entries of an entry's prompt logit rows (called before its {@code computed} moves on):
     * row j holds the logits at position {@code promptLogitPosition + j}, which score prompt token p + 1.
     */
    private void addPromptLogprobs(StepPlan.Entry e, float[] logits) {
        Sequence s = e.sequence();
        int top = s.request.params().promptLogprobs();
        for (int j = 0; j < e.promptLogitCount(); j++) {
            int position = e.promptLogitPosition() + j;
            int offset = (e.promptLogitRow() + j) * vocabSize;
            int token = s.token(position + 1);
            s.promptLogprobs[position + 1] = Sampler.promptLogprob(logits, offset, vocabSize, token, top);
        }
        if (e.promptLogitCount() > 0) {
            s.promptLogprobsDone = Math.max(s.promptLogprobsDone, e.promptLogitPosition() + e.promptLogitCount());
        }
    }

    private void emit(Sequence s, int token, TokenLogprob logprob) {
        SamplingParams p = s.request.params();
        s.append(token);
        s.samplerState.accept(token);
        generationTokens++;
        if (s.firstTokenNanos == 0) {
            s.firstTokenNanos = System.nanoTime();
        }
        if (logprob != null) {
            s.logprobs.add(logprob);
        }
        if (s.promptLogprobs != null && s.generatedCount() == 1) {
            List<PromptLogprob> prompt = Arrays.asList(s.promptLogprobs.clone());
            safely(s.listener, () -> s.listener.onPromptLogprobs(prompt));
            if (s.status == Sequence.Status.FINISHED) {
                return; // the listener failed, which cancelled the request
            }
        }
        boolean eos = !p.ignoreEos() && contains(eosTokenIds, token);
        boolean stopToken = p.stopTokenIds().contains(token);
        String text = eos || stopToken ? "" : s.output.add(token, s.generatedCount() > p.minTokens());
        safely(s.listener, () -> s.listener.onToken(new TokenDelta(token, text, logprob)));
        if (s.status == Sequence.Status.FINISHED) {
            return; // the listener cancelled
        }
        if (eos || stopToken) {
            finish(s, FinishReason.STOP, stopToken ? (Object) token : null);
        } else if (s.output.stopHit() != null) {
            finish(s, FinishReason.STOP, s.output.stopHit());
        } else if (s.generatedCount() >= p.maxTokens() || s.length() >= maxModelLen) {
            finish(s, FinishReason.LENGTH, null);
        }
    }

    private void finish(Sequence s, FinishReason reason, Object stopReason) {
        if (s.status == Sequence.Status.FINISHED) {
            return;
        }
        scheduler.remove(s);
        if (live.remove(s.request.id()) != null) {
            unfinished.decrementAndGet();
        }
        publishStatsIfAdaptersChanged(); // the client must not see its adapter still running after its answer
        String tail = reason == FinishReason.ABORT ? "" : s.output.finish();
        if (!tail.isEmpty()) {
            safely(s.listener, () -> s.listener.onToken(new TokenDelta(-1, tail, null)));
        }
        Completion c = new Completion(s.request.id(), s.adapter(), reason, stopReason, s.output.text(),
                s.generatedTokens(), List.copyOf(s.logprobs), s.promptLength(), s.arrivalNanos, s.firstTokenNanos,
                System.nanoTime(), s.preemptions, s.promptLogprobs == null ? null : Arrays.asList(s.promptLogprobs));
        safely(s.listener, () -> s.listener.onFinish(c));
    }

    private void fail(Sequence s, EngineException error) {
        if (s.status == Sequence.Status.FINISHED) {
            return;
        }
        scheduler.remove(s);
        if (live.remove(s.request.id()) != null) {
            unfinished.decrementAndGet();
        }
        publishStatsIfAdaptersChanged();
        safely(s.listener, () -> s.listener.onError(error));
    }

    /** A listener that throws loses its own request, nothing else. */
    private void safely(GenerationListener listener, Runnable call) {
        try {
            call.run();
        } catch (RuntimeException e) {
            log.warn("request listener failed; cancelling its request", e);
            for (Sequence s : List.copyOf(live.values())) {
                if (s.listener == listener) {
                    scheduler.remove(s);
                    if (live.remove(s.request.id()) != null) {
                        unfinished.decrementAndGet();
                    }
                }
            }
        }
    }

    private void publishStats() {
        scheduler.takeAdapterSetsChanged();
        int waiting = scheduler.waitingCount() + queued.get();
        boolean busy = scheduler.runningCount() + waiting > 0;
        if (busy) {
            idleSinceNanos = 0;
        } else if (idleSinceNanos == 0) {
            idleSinceNanos = System.nanoTime();
        }
        int promised = 0; // pages the waiting requests will take first
        for (Sequence s : scheduler.waiting()) {
            promised += kvManager.pagesFor(s.length());
        }
        load = new EngineLoad(scheduler.runningCount(), waiting, config.maxRunning(),
                Math.max(0, kvManager.freePages() - promised),
                kvManager.pageSize(), adapters.residentAdapters().keySet(), idleSinceNanos, migrationsOut);
        stats = new EngineStats(scheduler.runningCount(), scheduler.waitingCount() + queued.get(),
                kvManager.usage(), kvManager.usedPages(), kvManager.numPages(), scheduler.runningAdapters(),
                scheduler.waitingAdapters(),
                adapters.slotCount(), promptTokens, generationTokens, scheduler.preemptions() + handedOut, steps,
                adapters.loadCount(), adapters.evictionCount());
        stepLog.deviceTier(new StepLog.DeviceTier(List.copyOf(adapters.residentAdapters().keySet()),
                adapters.copyingAdapters(), adapters.slotCount()));
    }

    private static boolean contains(int[] values, int v) {
        for (int x : values) {
            if (x == v) {
                return true;
            }
        }
        return false;
    }

    /** Live request ids (tests). */
    public List<String> liveRequestIds() {
        return callOnEngineThread(() -> new ArrayList<>(live.keySet()));
    }

    /**
     * Stops accepting requests, lets running ones finish until {@code deadline}, then aborts the rest
     * and stops the engine thread.
     */
    public void shutdown(Duration deadline) {
        accepting = false;
        long end = System.nanoTime() + deadline.toNanos();
        while (System.nanoTime() < end && unfinished.get() > 0) {
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        stopping = true;
        inbox.add(() -> {
            for (Sequence s : List.copyOf(live.values())) {
                finish(s, FinishReason.ABORT, null);
            }
        });
        try {
            thread.join(TimeUnit.SECONDS.toMillis(30));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        if (thread.isAlive()) {
            shutdown(Duration.ZERO);
        }
    }
}
