package ai.punica.model;

import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Segments;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

/**
 * The Llama-family decoder (Llama 2/3, Mistral, Qwen2) written once against {@link Backend}, with the
 * LoRA add-on of every projection computed for the whole batch by SGMV (Punica §4):
 * {@code Y = X·Wᵀ + [x₁·A₁ᵀ·B₁ᵀ·s₁; x₂·A₂ᵀ·B₂ᵀ·s₂; …]}, the base GEMM once, the add-on as a shrink to
 * rank r and an expand back, rows grouped into adapter segments.
 *
 * <pre>
 *  tokens ─ embedding ─► x ─ rmsNorm ─► h                                           (layer 0's input norm)
 *  ┌─► h ─ qkv GEMM (+LoRA q,k,v) ─ ropeAppendKv (rotate q,k; cache[slot] = k,v) ─ attention ─► attn
 *  │   attn ─ o GEMM (+LoRA o) ─► o
 *  │   x, o ─ addRmsNorm ─► x = x + o, h = rmsNorm(x)                          (post-attention norm)
 *  │   h ─ gate|up GEMM (+LoRA gate,up) ─ swiglu ─ down GEMM (+LoRA down) ─► mlp
 *  └── x, mlp ─ addRmsNorm ─► x = x + mlp, h = rmsNorm(x)            (next layer's input norm; × layers)
 *  after the last layer: x, mlp ─ addRmsNorm (final norm) ─► n ─ lm_head GEMM ─► logits, logit rows only
 * </pre>
 *
 * <p>The last layer computes only the logit rows after its KV append when the batch allows it
 * ({@link ForwardBatch#lastLayerRows}): their q|k|v and residual are gathered first, and the final
 * add + norm runs on them. Otherwise the final add runs on every row, then the logit rows are gathered
 * and normed.
 *
 * <p>Where the backend asks for it ({@link Backend#loraApart}, CUDA's {@code -Dpunica.cuda.loraApart}), steps of at
 * most 256 rows keep each projection's LoRA add-on apart ({@link Backend#matmulLoraApart}) and the op after the
 * projection adds it: ropeAppendKv (q|k|v), swiglu (gate|up), addRmsNorm (o, and down in the next layer's input
 * norm or the final norm).
 *
 * Fused weights: q|k|v stacked along output rows, gate|up likewise. Scratch activations are allocated
 * once at the step maximum and viewed with {@link Tensor#firstRows}. Only the engine thread calls
 * {@link #forwardLogits}.
 *
 * <p>Tensor parallel: loaded with a {@link TensorParallelRank}, this is one rank's shard (its heads, KV
 * heads and MLP columns, {@code ai.punica.parallel} slicing the weights), and the outputs of o and down are
 * partial sums that the rank's all-reduce adds up; everything else reads the same on every rank.
 *
 * <p>How a step's rows are laid out, how decode steps are padded and replayed on a backend with a
 * {@link StepRecorder} (CUDA graphs), and which logit rows belong to whom is the engine's
 * {@code ModelRunner}'s business; this class computes one {@link ForwardBatch} as given.
 */
public final class LlamaModel implements AutoCloseable {

    /**
     * Projections whose LoRA add-on runs as one SGMV shrink and one expand: those of a group read the same
     * input and write one fused output row (q|k|v into qkv, gate|up into gate_up), in this order.
     */
    private static final Projection[][] LORA_GROUPS = {
            {Projection.Q_PROJ, Projection.K_PROJ, Projection.V_PROJ},
            {Projection.O_PROJ},
            {Projection.GATE_PROJ, Projection.UP_PROJ},
            {Projection.DOWN_PROJ}};
    private static final int GROUP_QKV = 0;
    private static final int GROUP_O = 1;
    private static final int GROUP_GATE_UP = 2;
    private static final int GROUP_DOWN = 3;
    private static final int LORA_GROUP_MAX = 3;
    private static final int[] SINGLE_LORA_COL = {0};
    /** The most rows of a step whose projections keep their LoRA add-on apart (the largest decode bucket). */
    private static final int APART_MAX_ROWS = 256;

    /** One decoder layer's weights on the backend. */
    private record Layer(Tensor attnNorm, Tensor qkv, Tensor qkvBias, Tensor o, Tensor mlpNorm, Tensor gateUp,
                         Tensor down) {
    }

    private final ModelConfig config;
    /** The shapes this copy computes with: {@link #config}, or one tensor-parallel shard's. */
    private final ModelConfig local;
    /** Null, or this copy's place in a tensor-parallel group. */
    private final TensorParallelRank tp;
    private final Backend backend;
    private final Tensor embedTokens;
    private final Tensor finalNorm;
    private final Tensor lmHead;
    private final Layer[] layers;
    private final RopeTable rope;
    private final AttentionShape shape;
    private final int qCols;
    private final int kvCols;
    private final int maxRows;
    private final int maxLogitRows;
    private final int maxLoraRank;
    /** [layer][Projection.ordinal()]: the LoRA weights of every adapter slot. */
    private final LoraWeights[][] lora;
    /** [layer][group of {@link #LORA_GROUPS}]: the same LoraWeights, grouped. */
    private final List<LoraWeights>[][] loraGroups;
    /** Where each projection of the q|k|v and gate|up groups writes in the fused output row. */
    private final int[] qkvLoraCols;
    private final int[] gateUpLoraCols;
    private final List<Tensor> owned;

    // Scratch activations, [maxRows, ·].
    private final Tensor x;
    private final Tensor h;
    private final Tensor qkvOut;
    private final Tensor attnOut;
    /** o and MLP outputs; a layer's MLP output waits here for the residual add fused into the next norm. */
    private final Tensor projOut;
    private final Tensor gateUpOut;
    private final Tensor mlpAct;
    /**
     * Steps of at most this many rows keep each projection's LoRA add-on apart for the op that consumes the
     * projection ({@link Backend#loraApart}); 0: never. The add-ons' buffers below are this many rows.
     */
    private final int apartRows;
    private final Tensor qkvLora;
    /** The o and down add-ons (o's is consumed before down's is made). */
    private final Tensor projLora;
    private final Tensor gateUpLora;
    /** The last down projection's add-on, waiting for the residual add with projOut; null when none. */
    private Tensor mlpLora;
    /** [n]: the rank-space scratch of a group of n projections, [maxRows, n · max(1, maxLoraRank)]. */
    private final Tensor[] loraRank = new Tensor[LORA_GROUP_MAX + 1];
    // [maxLogitRows, ·]
    private final Tensor logitHidden;
    private final Tensor logitQkv;
    /** Where the residual stream of the current step lives: x, or logitHidden after restriction. */
    private Tensor residual;
    private final Tensor logitNormed;
    private final Tensor logits;

    /** @param owned where every tensor made is listed as it is made, so a failed load can free them */
    private LlamaModel(ModelConfig config, Backend backend, WeightSource weights, int maxRows, int maxLogitRows,
                       int loraSlots, int maxLoraRank, TensorParallelRank tp, List<Tensor> owned) {
        this.owned = owned;
        this.config = config;
        this.tp = tp;
        this.local = tp == null ? config : tp.shardConfig();
        this.backend = backend;
        this.maxRows = maxRows;
        this.maxLogitRows = maxLogitRows;
        this.maxLoraRank = maxLoraRank;
        this.rope = config.ropeTable();
        this.shape = new AttentionShape(local.numHeads(), local.numKvHeads(), config.headDim(),
                (float) (1.0 / Math.sqrt(config.headDim())), config.slidingWindow());
        this.qCols = shape.qCols();
        this.kvCols = shape.kvCols();

        embedTokens = own(backend.loadWeight(weights.get("model.embed_tokens.weight")));
        finalNorm = own(backend.loadWeight(weights.get("model.norm.weight")));
        lmHead = config.tieWordEmbeddings() && !weights.contains("lm_head.weight")
                ? embedTokens
                : own(backend.loadWeight(weights.get("lm_head.weight")));
        layers = new Layer[config.numLayers()];
        for (int l = 0; l < layers.length; l++) {
            String p = "model.layers." + l + ".";
            Tensor qkvBias = null;
            if (config.attentionBias()) {
                qkvBias = own(backend.concatRows(p + "self_attn.qkv_proj.bias", List.of(
                        weights.get(p + "self_attn.q_proj.bias"), weights.get(p + "self_attn.k_proj.bias"),
                        weights.get(p + "self_attn.v_proj.bias"))));
            }
            layers[l] = new Layer(
                    own(backend.loadWeight(weights.get(p + "input_layernorm.weight"))),
                    own(backend.concatRows(p + "self_attn.qkv_proj.weight", List.of(
                            weights.get(p + "self_attn.q_proj.weight"), weights.get(p + "self_attn.k_proj.weight"),
                            weights.get(p + "self_attn.v_proj.weight")))),
                    qkvBias,
                    own(backend.loadWeight(weights.get(p + "self_attn.o_proj.weight"))),
                    own(backend.loadWeight(weights.get(p + "post_attention_layernorm.weight"))),
                    own(backend.concatRows(p + "mlp.gate_up_proj.weight", List.of(
                            weights.get(p + "mlp.gate_proj.weight"), weights.get(p + "mlp.up_proj.weight")))),
                    own(backend.loadWeight(weights.get(p + "mlp.down_proj.weight"))));
        }
        lora = new LoraWeights[config.numLayers()][Projection.values().length];
        for (LoraWeights[] perLayer : lora) {
            for (int i = 0; i < perLayer.length; i++) {
                perLayer[i] = LoraWeights.empty(loraSlots);
            }
        }

        loraGroups = groupLora(lora);

        int hidden = config.hiddenSize();
        int inter = local.intermediateSize();
        qkvLoraCols = new int[] {0, qCols, qCols + kvCols};
        gateUpLoraCols = new int[] {0, inter};
        x = own(backend.allocate(maxRows, hidden));
        h = own(backend.allocate(maxRows, hidden));
        qkvOut = own(backend.allocate(maxRows, qCols + 2 * kvCols));
        attnOut = own(backend.allocate(maxRows, qCols));
        projOut = own(backend.allocate(maxRows, hidden));
        gateUpOut = own(backend.allocate(maxRows, 2 * inter));
        mlpAct = own(backend.allocate(maxRows, inter));
        for (Projection[] group : LORA_GROUPS) {
            int n = group.length;
            if (loraRank[n] == null) {
                loraRank[n] = own(backend.allocate(maxRows, n * Math.max(1, maxLoraRank)));
            }
        }
        // Decode-sized steps: there the add-on's kernels are short and their latency is what hides behind the GEMM.
        apartRows = backend.loraApart() && tp == null && maxLoraRank > 0 ? Math.min(maxRows, APART_MAX_ROWS) : 0;
        qkvLora = apartRows == 0 ? null : own(backend.allocate(apartRows, qCols + 2 * kvCols));
        projLora = apartRows == 0 ? null : own(backend.allocate(apartRows, hidden));
        gateUpLora = apartRows == 0 ? null : own(backend.allocate(apartRows, 2 * inter));
        logitHidden = own(backend.allocate(maxLogitRows, hidden));
        logitQkv = own(backend.allocate(maxLogitRows, qCols + 2 * kvCols));
        logitNormed = own(backend.allocate(maxLogitRows, hidden));
        logits = own(backend.allocateLogits(maxLogitRows, config.vocabSize()));
    }

    /**
     * Loads the weights onto the backend: a {@link Checkpoint}'s, or any other {@link WeightSource}'s.
     *
     * @param maxRows      most tokens in one step (the scheduler's token budget)
     * @param maxLogitRows most rows sampled in one step (the most running sequences)
     * @param loraSlots    adapter slots on the backend
     * @param maxLoraRank  largest adapter rank a slot accepts
     */
    public static LlamaModel load(ModelConfig config, WeightSource weights, Backend backend, int maxRows,
                                  int maxLogitRows, int loraSlots, int maxLoraRank) {
        return load(config, weights, backend, maxRows, maxLogitRows, loraSlots, maxLoraRank, null);
    }

    /**
     * As {@link #load(ModelConfig, WeightSource, Backend, int, int, int, int)}, as one rank of a tensor-parallel
     * group: {@code weights} then gives this rank's shard of every projection (shaped as
     * {@code tp.shardConfig()} says), and the LoRA weights put in its slots are shards too.
     */
    public static LlamaModel load(ModelConfig config, WeightSource weights, Backend backend, int maxRows,
                                  int maxLogitRows, int loraSlots, int maxLoraRank, TensorParallelRank tp) {
        List<Tensor> made = new ArrayList<>();
        try {
            return new LlamaModel(config, backend, weights, maxRows, maxLogitRows, loraSlots, maxLoraRank, tp, made);
        } catch (RuntimeException | Error e) {
            // A weight missing or malformed halfway: free what was already on the backend.
            for (int i = made.size() - 1; i >= 0; i--) {
                try {
                    backend.free(made.get(i));
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    private Tensor own(Tensor t) {
        owned.add(t);
        return t;
    }

    public ModelConfig config() {
        return config;
    }

    public Backend backend() {
        return backend;
    }

    public int maxRows() {
        return maxRows;
    }

    public int maxLogitRows() {
        return maxLogitRows;
    }

    public int maxLoraRank() {
        return maxLoraRank;
    }

    public int loraSlots() {
        return lora[0][0].slots();
    }

    /**
     * The LoRA weights of one projection of one layer. The adapter manager fills its slots from adapter
     * files; anything else may too (a benchmark puts {@code backend.loadWeight} of random A and B there),
     * between steps, on the engine thread.
     */
    public LoraWeights loraWeights(int layer, Projection projection) {
        return lora[layer][projection.ordinal()];
    }

    /**
     * Paged KV storage of {@code numPages} pages of {@code pageSize} tokens, shaped for this model (for a
     * tensor-parallel rank, its KV heads only; the leader has its peers allocate theirs alike).
     */
    public KvStorage allocateKv(int numPages, int pageSize) {
        KvStorage kv = backend.allocateKv(config.numLayers(), numPages, pageSize, local.numKvHeads(), config.headDim());
        if (tp != null) {
            tp.kvAllocated(numPages, pageSize);
        }
        return kv;
    }

    /**
     * Runs one step as given and leaves the logits of {@code batch.logitRows()} on the backend: a
     * {@code [logitRows, vocab]} view that the next call overwrites.
     */
    public Tensor forwardLogits(ForwardBatch batch, KvStorage kv) {
        int rows = batch.rows();
        if (rows < 1 || rows > maxRows) {
            throw new IllegalArgumentException("step has " + rows + " rows; this model was set up for 1.." + maxRows);
        }
        int logitCount = batch.logitRows().length;
        if (logitCount > maxLogitRows) {
            throw new IllegalArgumentException("step wants logits of " + logitCount + " rows; at most " + maxLogitRows);
        }
        if (tp == null) {
            compute(batch, kv);
            return logits(logitCount);
        }
        // One rank of a group: the leader's hooks run the same batch on its peers around its own share.
        Throwable failure = null;
        tp.stepStarting(batch);
        try {
            compute(batch, kv);
        } catch (RuntimeException | Error e) {
            failure = e;
            throw e;
        } finally {
            tp.stepFinished(failure);
        }
        return logits(logitCount);
    }

    /** The first {@code rows} rows of the last step's logits, on the backend. */
    public Tensor logits(int rows) {
        return logits.firstRows(rows);
    }

    /** Every operation of a step, up to the logits of its logit rows in {@link #logits}. */
    private void compute(ForwardBatch batch, KvStorage kv) {
        int rows = batch.rows();
        int logitCount = batch.logitRows().length;
        // x = embed(tokens)
        backend.embedding(embedTokens, batch.tokens(), x.firstRows(rows));
        ForwardBatch current = batch;
        mlpLora = null;
        for (int l = 0; l < layers.length; l++) {
            boolean last = l == layers.length - 1;
            current = layer(l, current, last ? batch.lastLayerRows() : null, kv);
        }
        if (logitCount == 0 || (tp != null && !tp.computesLogits())) {
            return;
        }
        // The last layer's MLP output (projOut) is not yet in the residual stream.
        Tensor mlp = projOut.firstRows(current.rows());
        Tensor normed = logitNormed.firstRows(logitCount);
        if (current != batch) {
            // The last layer kept only the logit rows: x = x + mlp; n = rmsNorm(x), on those rows
            backend.addRmsNorm(residual, mlp, mlpLora, finalNorm, config.rmsNormEps(), normed);
        } else if (samplesEveryRow(batch)) {
            // Decode: every row samples, in order: x = x + mlp; n = rmsNorm(x)
            backend.addRmsNorm(x.firstRows(rows), mlp, mlpLora, finalNorm, config.rmsNormEps(), normed);
        } else {
            // x = x + mlp on every row, then n = rmsNorm(x) on the rows that sample
            Tensor xs = x.firstRows(rows);
            Tensor kept = logitHidden.firstRows(logitCount);
            if (mlpLora != null) {
                backend.add(mlp, mlpLora, mlp);
            }
            backend.add(xs, mlp, xs);
            backend.gatherRows(xs, batch.logitRows(), kept);
            backend.rmsNorm(kept, finalNorm, config.rmsNormEps(), normed);
        }
        // logits = n·lm_headᵀ
        backend.matmul(normed, lmHead, null, logits.firstRows(logitCount));
    }

    private static boolean samplesEveryRow(ForwardBatch batch) {
        int[] logitRows = batch.logitRows();
        if (logitRows.length != batch.rows()) {
            return false;
        }
        for (int r = 0; r < logitRows.length; r++) {
            if (logitRows[r] != r) {
                return false;
            }
        }
        return true;
    }

    /**
     * Which (layer, projection group) pairs run SGMV for these segments, the rule {@link #project} applies:
     * a group runs when any of its projections has a present slot among the segments. Part of what fixes
     * a step's operations (the key of a recorded step).
     */
    public BitSet loraGroupsUsed(Segments segments) {
        BitSet used = new BitSet();
        int groups = LORA_GROUPS.length;
        for (int l = 0; l < layers.length; l++) {
            for (int g = 0; g < groups; g++) {
                if (anyPresent(loraGroup(l, g), segments)) {
                    used.set(l * groups + g);
                }
            }
        }
        return used;
    }

    private static boolean anyPresent(List<LoraWeights> group, Segments segments) {
        for (LoraWeights weights : group) {
            for (int i = 0; i < segments.count(); i++) {
                if (weights.present(segments.slots()[i])) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The LoRA weights of group {@code g} of {@link #LORA_GROUPS} in layer {@code l}, in the group's order. */
    private List<LoraWeights> loraGroup(int l, int g) {
        return loraGroups[l][g];
    }

    @SuppressWarnings("unchecked")
    private static List<LoraWeights>[][] groupLora(LoraWeights[][] lora) {
        List<LoraWeights>[][] groups = new List[lora.length][LORA_GROUPS.length];
        for (int l = 0; l < lora.length; l++) {
            for (int g = 0; g < LORA_GROUPS.length; g++) {
                List<LoraWeights> group = new ArrayList<>();
                for (Projection p : LORA_GROUPS[g]) {
                    group.add(lora[l][p.ordinal()]);
                }
                groups[l][g] = List.copyOf(group);
            }
        }
        return groups;
    }

    /**
     * One decoder layer. It starts by adding the previous layer's MLP output (left in {@link #projOut}) to
     * the residual stream, fused with its own input norm, and ends with its MLP output in projOut, added by
     * the next layer or by {@link #compute}. When {@code keep} is given, keys and values of every row are
     * still appended, but everything after that is computed only for {@code keep}'s rows; returns the batch
     * that the residual stream ({@link #residual}) now holds.
     */
    private ForwardBatch layer(int l, ForwardBatch batch, ForwardBatch keep, KvStorage kv) {
        Layer w = layers[l];
        int rows = batch.rows();
        Tensor xs = x.firstRows(rows);
        Tensor hs = h.firstRows(rows);
        Tensor qkv = qkvOut.firstRows(rows);
        Tensor proj = projOut.firstRows(rows);
        // Each projection's LoRA add-on apart for its consumer (null: none, or added into the output already).
        boolean apart = rows <= apartRows;

        if (l == 0) {
            // h = rmsNorm(x)
            backend.rmsNorm(xs, w.attnNorm(), config.rmsNormEps(), hs);
        } else {
            // x = x + (mlp + LoRA_down) (previous layer); h = rmsNorm(x)
            backend.addRmsNorm(xs, proj, mlpLora, w.attnNorm(), config.rmsNormEps(), hs);
        }
        // qkv = h·[Wq;Wk;Wv]ᵀ (+ bias), LoRA_q|k|v(h) into qkv or apart
        Tensor qkvAddOn = project(l, GROUP_QKV, hs, w.qkv(), w.qkvBias(), batch.segments(), qkv, qkvLoraCols,
                apart ? qkvLora : null);
        // q, k = rope(q (+ LoRA_q), pos), rope(k (+ LoRA_k), pos); cache[slot] = k, v (+ LoRA_v)
        backend.ropeAppendKv(qkv, qkvAddOn, batch.positions(), rope, local.numHeads(), local.numKvHeads(),
                config.headDim(), kv, l, qCols, qCols + kvCols, batch.attention().slotMapping());

        if (keep != null) {
            // Only the logit rows go on: their q|k|v and residual move to buffers of their own.
            rows = keep.rows();
            Tensor keptQkv = logitQkv.firstRows(rows);
            Tensor keptX = logitHidden.firstRows(rows);
            backend.gatherRows(qkv, batch.logitRows(), keptQkv);
            backend.gatherRows(xs, batch.logitRows(), keptX);
            batch = keep;
            qkv = keptQkv;
            xs = keptX;
            hs = h.firstRows(rows);
            proj = projOut.firstRows(rows);
        }
        residual = xs;

        Tensor attn = attnOut.firstRows(rows);
        // attn = softmax(q·kᵀ·scale)·v over each sequence's pages
        backend.attention(qkv, kv, l, batch.attention(), shape, attn);
        // o = attn·Woᵀ, LoRA_o(attn) into o or apart; x = x + (o + LoRA_o); h = rmsNorm(x)
        Tensor oAddOn = project(l, GROUP_O, attn, w.o(), null, batch.segments(), proj, SINGLE_LORA_COL,
                apart ? projLora : null);
        reducePartialSums(proj);
        backend.addRmsNorm(xs, proj, oAddOn, w.mlpNorm(), config.rmsNormEps(), hs);

        // gu = h·[Wg;Wu]ᵀ, LoRA_gate|up(h) into gu or apart
        Tensor gu = gateUpOut.firstRows(rows);
        Tensor act = mlpAct.firstRows(rows);
        Tensor guAddOn = project(l, GROUP_GATE_UP, hs, w.gateUp(), null, batch.segments(), gu, gateUpLoraCols,
                apart ? gateUpLora : null);
        // a = silu(g (+ LoRA_gate))·(u (+ LoRA_up)); mlp = a·Wdownᵀ, LoRA_down(a) into mlp or apart: both wait in
        // projOut and mlpLora for the next residual add
        backend.swiglu(gu, guAddOn, act);
        mlpLora = project(l, GROUP_DOWN, act, w.down(), null, batch.segments(), proj, SINGLE_LORA_COL,
                apart ? projLora : null);
        reducePartialSums(proj);
        return batch;
    }

    /**
     * Tensor parallel: o and down are row-parallel, so each rank holds {@code attn_r·Wo_rᵀ + LoRA_o partial}
     * over its slice of the input features; {@code o = Σ_r} of those, one all-reduce per projection with the
     * LoRA add-on inside it. Nothing to do on a whole model.
     */
    private void reducePartialSums(Tensor partial) {
        if (tp != null) {
            tp.allReduce(partial);
        }
    }

    /**
     * {@code out = in·wᵀ (+ bias)}, plus {@code out[:, cols[i] : cols[i] + out_i] += LoRA_i(in)} for projection
     * i of group {@code g} and every segment whose adapter adapts it. A group of several projections (q|k|v,
     * gate|up: one input, one fused output row) is one shrink and one expand, projection i in columns
     * [i·R, (i+1)·R) of the rank scratch (R = max(1, maxLoraRank)). Without an adapter in the step it is the
     * GEMM alone. With {@code apart} (a buffer of at least in's rows), the add-on goes there instead of into out
     * ({@link Backend#matmulLoraApart}), and the rows of it this step uses are returned for the consumer; null
     * otherwise (nothing to add).
     */
    private Tensor project(int layer, int g, Tensor in, Tensor w, Tensor bias, Segments segments, Tensor out,
                           int[] cols, Tensor apart) {
        List<LoraWeights> group = loraGroup(layer, g);
        if (!anyPresent(group, segments)) {
            backend.matmul(in, w, bias, out);
            return null;
        }
        Tensor v = loraRank[group.size()].firstRows(in.rows());
        if (apart == null) {
            backend.matmulLora(in, w, bias, out, group, segments, v, cols);
            return null;
        }
        Tensor addOn = apart.firstRows(in.rows());
        backend.matmulLoraApart(in, w, bias, out, group, segments, v, cols, addOn);
        return addOn;
    }

    @Override
    public void close() {
        StepRecorder recorder = backend.stepRecorder();
        if (recorder != null) {
            recorder.clear(); // recordings name the tensors freed here
        }
        for (Tensor t : owned) {
            backend.free(t);
        }
        owned.clear();
    }
}
