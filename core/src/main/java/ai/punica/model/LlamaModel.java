package ai.punica.model;

import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * The Llama-family decoder (Llama 2/3, Mistral, Qwen2) written once against {@link Backend}, with the
 * LoRA add-on of every projection computed for the whole batch by SGMV (Punica §4):
 * {@code Y = X·Wᵀ + [x₁·A₁ᵀ·B₁ᵀ·s₁; x₂·A₂ᵀ·B₂ᵀ·s₂; …]}, the base GEMM once, the add-on as a shrink to
 * rank r and an expand back, rows grouped into adapter segments.
 *
 * <pre>
 *  tokens ─ embedding ─► x ─┬─ rmsNorm ─► h ─ qkv GEMM (+LoRA q,k,v) ─ rope ─ appendKv ─ attention ─► attn
 *                            │                                                                          │
 *                            ◄──────────────────────── + ◄─ o GEMM (+LoRA o) ◄───────────────────────────┘
 *                          x ┬─ rmsNorm ─► h ─ gate|up GEMM (+LoRA gate,up) ─ swiglu ─ down GEMM (+LoRA down)
 *                            ◄──────────────────────── + ◄────────────────────────────────────────────────┘
 *  (× layers) ─ gather logit rows ─ rmsNorm ─ lm_head ─► logits
 * </pre>
 *
 * Fused weights: q|k|v stacked along output rows, gate|up likewise. Scratch activations are allocated
 * once at the step maximum and viewed with {@link Tensor#firstRows}. Only the engine thread calls
 * {@link #forward} and {@link #forwardLogits}.
 */
public final class LlamaModel implements AutoCloseable {

    /** One decoder layer's weights on the backend. */
    private record Layer(Tensor attnNorm, Tensor qkv, Tensor qkvBias, Tensor o, Tensor mlpNorm, Tensor gateUp,
                         Tensor down) {
    }

    private final ModelConfig config;
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
    private final List<Tensor> owned = new ArrayList<>();

    // Scratch activations, [maxRows, ·].
    private final Tensor x;
    private final Tensor h;
    private final Tensor qkvOut;
    private final Tensor attnOut;
    private final Tensor projOut;
    private final Tensor gateUpOut;
    private final Tensor mlpAct;
    private final Tensor loraRank;
    // [maxLogitRows, ·]
    private final Tensor logitHidden;
    private final Tensor logitQkv;
    /** Where the residual stream of the current step lives: x, or logitHidden after restriction. */
    private Tensor residual;
    private final Tensor logitNormed;
    private final Tensor logits;
    private final float[] logitsHost;

    private LlamaModel(ModelConfig config, Backend backend, WeightSource weights, int maxRows, int maxLogitRows,
                       int loraSlots, int maxLoraRank) {
        this.config = config;
        this.backend = backend;
        this.maxRows = maxRows;
        this.maxLogitRows = maxLogitRows;
        this.maxLoraRank = maxLoraRank;
        this.rope = config.ropeTable();
        this.shape = new AttentionShape(config.numHeads(), config.numKvHeads(), config.headDim(),
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

        int hidden = config.hiddenSize();
        int inter = config.intermediateSize();
        x = own(backend.allocate(maxRows, hidden));
        h = own(backend.allocate(maxRows, hidden));
        qkvOut = own(backend.allocate(maxRows, qCols + 2 * kvCols));
        attnOut = own(backend.allocate(maxRows, qCols));
        projOut = own(backend.allocate(maxRows, hidden));
        gateUpOut = own(backend.allocate(maxRows, 2 * inter));
        mlpAct = own(backend.allocate(maxRows, inter));
        loraRank = own(backend.allocate(maxRows, Math.max(1, maxLoraRank)));
        logitHidden = own(backend.allocate(maxLogitRows, hidden));
        logitQkv = own(backend.allocate(maxLogitRows, qCols + 2 * kvCols));
        logitNormed = own(backend.allocate(maxLogitRows, hidden));
        logits = own(backend.allocate(maxLogitRows, config.vocabSize()));
        logitsHost = new float[maxLogitRows * config.vocabSize()];
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
        return new LlamaModel(config, backend, weights, maxRows, maxLogitRows, loraSlots, maxLoraRank);
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

    public KvStorage allocateKv(int numPages, int pageSize) {
        return backend.allocateKv(config.numLayers(), numPages, pageSize, config.numKvHeads(), config.headDim());
    }

    /**
     * Runs one step and returns the logits of {@code batch.logitRows()}, row-major
     * {@code [logitRows, vocab]}, in a buffer reused by the next call.
     */
    public float[] forward(ForwardBatch batch, KvStorage kv) {
        Tensor rows = forwardLogits(batch, kv);
        if (rows.rows() == 0) {
            return new float[0];
        }
        backend.download(rows, logitsHost);
        return logitsHost;
    }

    /**
     * Runs one step and leaves the logits of {@code batch.logitRows()} on the backend: a
     * {@code [logitRows, vocab]} view that the next call overwrites (for {@link Backend#sample}).
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
        // x = embed(tokens)
        backend.embedding(embedTokens, batch.tokens(), x.firstRows(rows));
        ForwardBatch current = batch;
        for (int l = 0; l < layers.length; l++) {
            boolean last = l == layers.length - 1;
            current = layer(l, current, last ? batch.lastLayerRows() : null, kv);
        }
        Tensor finalRows;
        if (current != batch) {
            finalRows = residual; // the last layer already kept only the logit rows
        } else {
            finalRows = logitHidden.firstRows(logitCount);
            backend.gatherRows(x.firstRows(rows), batch.logitRows(), finalRows);
        }
        Tensor out = logits.firstRows(logitCount);
        if (logitCount == 0) {
            return out;
        }
        // logits = rmsNorm(x)·lm_headᵀ, only for rows that sample
        backend.rmsNorm(finalRows, finalNorm, config.rmsNormEps(), logitNormed.firstRows(logitCount));
        backend.matmul(logitNormed.firstRows(logitCount), lmHead, null, out);
        return out;
    }

    /**
     * One decoder layer. When {@code keep} is given, keys and values of every row are still appended,
     * but everything after that is computed only for {@code keep}'s rows; returns the batch that the
     * residual stream ({@link #residual}) now holds.
     */
    private ForwardBatch layer(int l, ForwardBatch batch, ForwardBatch keep, KvStorage kv) {
        Layer w = layers[l];
        int rows = batch.rows();
        Tensor xs = x.firstRows(rows);
        Tensor hs = h.firstRows(rows);
        Tensor qkv = qkvOut.firstRows(rows);

        // h = rmsNorm(x); qkv = h·[Wq;Wk;Wv]ᵀ (+ bias) + LoRA_q|k|v(h)
        backend.rmsNorm(xs, w.attnNorm(), config.rmsNormEps(), hs);
        backend.matmul(hs, w.qkv(), w.qkvBias(), qkv);
        addLora(l, Projection.Q_PROJ, hs, batch.segments(), qkv, 0);
        addLora(l, Projection.K_PROJ, hs, batch.segments(), qkv, qCols);
        addLora(l, Projection.V_PROJ, hs, batch.segments(), qkv, qCols + kvCols);
        // q, k = rope(q, pos), rope(k, pos); cache[slot] = k, v
        backend.rope(qkv, batch.positions(), rope, config.numHeads() + config.numKvHeads(), config.headDim());
        backend.appendKv(kv, l, qkv, qCols, qCols + kvCols, batch.attention().slotMapping());

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
        }
        residual = xs;

        Tensor attn = attnOut.firstRows(rows);
        Tensor proj = projOut.firstRows(rows);
        // attn = softmax(q·kᵀ·scale)·v over each sequence's pages
        backend.attention(qkv, kv, l, batch.attention(), shape, attn);
        // x = x + attn·Woᵀ + LoRA_o(attn)
        backend.matmul(attn, w.o(), null, proj);
        addLora(l, Projection.O_PROJ, attn, batch.segments(), proj, 0);
        backend.add(xs, proj, xs);

        // h = rmsNorm(x); gu = h·[Wg;Wu]ᵀ + LoRA_gate|up(h)
        Tensor gu = gateUpOut.firstRows(rows);
        Tensor act = mlpAct.firstRows(rows);
        backend.rmsNorm(xs, w.mlpNorm(), config.rmsNormEps(), hs);
        backend.matmul(hs, w.gateUp(), null, gu);
        addLora(l, Projection.GATE_PROJ, hs, batch.segments(), gu, 0);
        addLora(l, Projection.UP_PROJ, hs, batch.segments(), gu, config.intermediateSize());
        // a = silu(g)·u; x = x + a·Wdownᵀ + LoRA_down(a)
        backend.swiglu(gu, act);
        backend.matmul(act, w.down(), null, proj);
        addLora(l, Projection.DOWN_PROJ, act, batch.segments(), proj, 0);
        backend.add(xs, proj, xs);
        return batch;
    }

    /** y[:, col:col+out] += LoRA(in) for every segment whose adapter adapts this projection. */
    private void addLora(int layer, Projection projection, Tensor in, Segments segments, Tensor out, int col) {
        LoraWeights weights = lora[layer][projection.ordinal()];
        boolean any = false;
        for (int i = 0; i < segments.count() && !any; i++) {
            any = weights.present(segments.slots()[i]);
        }
        if (!any) {
            return;
        }
        Tensor v = loraRank.firstRows(in.rows());
        backend.sgmvShrink(in, weights, segments, v);
        backend.sgmvExpand(v, weights, segments, out, col);
    }

    @Override
    public void close() {
        for (Tensor t : owned) {
            backend.free(t);
        }
        owned.clear();
    }
}
