package ai.punica.engine;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.KvStorage;
import ai.punica.backend.Segments;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import ai.punica.model.ForwardBatch;
import ai.punica.model.LlamaModel;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;

/**
 * Turns a {@link StepPlan} into backend calls: the one place that knows how a step is laid out in rows,
 * how a decode step is padded for a replayed recording, what key a recording is kept under, and which
 * rows of the logits belong to whom. {@link LlamaModel} stays the plain forward pass over one
 * {@link ForwardBatch}.
 *
 * <ol>
 *   <li><b>Row layout</b> ({@link #layout}): the plan's sequences in its order (sorted by adapter slot,
 *       so each adapter's rows are one SGMV segment), each sequence's rows contiguous; per row its token,
 *       position and KV slot ({@code page[pos / pageSize]·pageSize + pos % pageSize}); per sequence its
 *       query rows, context length and page table; the rows whose logits are returned: those that sample,
 *       and before them the prompt rows a request's {@code prompt_logprobs} needs.</li>
 *   <li><b>Decode padding</b>: on a backend with a {@link StepRecorder} (CUDA graphs), a decode step (one
 *       row per sequence, every row sampled) is padded to the next batch-size bucket of
 *       {@link #DECODE_BUCKETS} with one-token sequences that use no adapter and live in a KV page of
 *       their own (one page past those the engine hands out, allocated here), so they never touch a real
 *       sequence's pages; their logits are not returned.</li>
 *   <li><b>Recording key</b> ({@link DecodeKey}): what fixes the operations of a padded step, so equal
 *       keys replay one recording.</li>
 * </ol>
 * Engine thread only.
 */
public final class ModelRunner {

    /** Decode batch sizes that get a recording of their own; a decode step is padded to the next one. */
    static final int[] DECODE_BUCKETS = {1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224,
            256};

    /**
     * What fixes the operations of a padded decode step: the model, its rows, the length of its page-table
     * array (a power of two), and which (layer, LoRA group) pairs run SGMV.
     */
    private record DecodeKey(LlamaModel model, int rows, int pageTables, BitSet lora) {
    }

    private final LlamaModel model;
    private final KvStorage kv;
    private final int pageSize;
    private final StepRecorder recorder;
    private final int[] buckets;
    /** The KV page the padding rows write and read; -1 without a recorder (no padding). */
    private final int paddingPage;
    private final float[] logitsHost;

    /**
     * Allocates the KV storage of {@code numPages} pages of {@code pageSize} tokens for the model's
     * sequences (plus the padding page where steps are recorded).
     */
    public ModelRunner(LlamaModel model, int numPages, int pageSize) {
        this.model = model;
        this.pageSize = pageSize;
        this.recorder = model.backend().stepRecorder();
        this.paddingPage = recorder != null ? numPages : -1;
        this.kv = model.allocateKv(numPages + (recorder != null ? 1 : 0), pageSize);
        int largest = Math.min(model.maxRows(), model.maxLogitRows());
        int[] smaller = Arrays.stream(DECODE_BUCKETS).filter(b -> b < largest).toArray();
        this.buckets = Arrays.copyOf(smaller, smaller.length + 1);
        buckets[smaller.length] = largest;
        this.logitsHost = new float[model.maxLogitRows() * model.config().vocabSize()];
    }

    public LlamaModel model() {
        return model;
    }

    /** The KV pages of the engine's sequences (and the padding page). */
    public KvStorage kv() {
        return kv;
    }

    /**
     * Runs the plan's step and leaves the logits of its sampling rows on the backend, row
     * {@link StepPlan.Entry#logitRow} for each entry that samples: a {@code [logitRows, vocab]} view
     * that the next step overwrites.
     */
    public Tensor execute(StepPlan plan) {
        return forwardLogits(layout(plan.entries(), pageSize));
    }

    /** {@link #forwardLogits} copied to the host, {@code [logitRows, vocab]} row-major, in a reused buffer. */
    public float[] download(Tensor logits) {
        if (logits.rows() == 0) {
            return new float[0];
        }
        model.backend().download(logits, logitsHost);
        return logitsHost;
    }

    /** One step over a batch laid out already (tests, benchmarks): the logits on the host. */
    public float[] forward(ForwardBatch batch) {
        return download(forwardLogits(batch));
    }

    /**
     * One step over a batch laid out already: decode steps padded and replayed where the backend records
     * steps, every other step run as is. Returns the logits of {@code batch.logitRows()} on the backend.
     */
    public Tensor forwardLogits(ForwardBatch batch) {
        ForwardBatch padded = recorder != null ? padDecodeStep(batch) : null;
        if (padded == null) {
            return model.forwardLogits(batch, kv);
        }
        recorder.run(new DecodeKey(model, padded.rows(), padded.attention().pageTables().length,
                model.loraGroupsUsed(padded.segments())), () -> model.forwardLogits(padded, kv));
        // The real rows come first, so the first logit rows are theirs.
        return model.logits(batch.logitRows().length);
    }

    /**
     * The rows of a step: {@code entries} in order, entry k's {@code chunk} tokens from its sequence's
     * {@code computed} count on, its logit row (if it samples) the last of its rows.
     */
    static ForwardBatch layout(List<StepPlan.Entry> entries, int pageSize) {
        int n = entries.size();
        int rows = 0;
        int pageCount = 0;
        int logitCount = 0;
        for (StepPlan.Entry e : entries) {
            rows += e.chunk();
            pageCount += e.sequence().pages.pageCount();
            logitCount += (e.logitRow() >= 0 ? 1 : 0) + e.promptLogitCount();
        }
        int[] tokens = new int[rows];
        int[] positions = new int[rows];
        int[] slotMapping = new int[rows];
        int[] queryStarts = new int[n + 1];
        int[] contextLens = new int[n];
        int[] pageTableStarts = new int[n + 1];
        int[] pageTables = new int[pageCount];
        int[] segStarts = new int[n + 1];
        int[] segSlots = new int[n];
        int segCount = 0;
        int[] logitRows = new int[logitCount];

        int row = 0;
        int pageOffset = 0;
        for (int k = 0; k < n; k++) {
            StepPlan.Entry e = entries.get(k);
            Sequence s = e.sequence();
            queryStarts[k] = row;
            pageTableStarts[k] = pageOffset;
            s.pages.copyTo(pageTables, pageOffset);
            pageOffset += s.pages.pageCount();
            if (segCount == 0 || segSlots[segCount - 1] != s.slot) {
                segStarts[segCount] = row;
                segSlots[segCount] = s.slot;
                segCount++;
            }
            for (int j = 0; j < e.chunk(); j++) {
                int pos = s.computed + j;
                tokens[row] = s.token(pos);
                positions[row] = pos;
                slotMapping[row] = s.pages.page(pos / pageSize) * pageSize + pos % pageSize;
                row++;
            }
            contextLens[k] = s.computed + e.chunk();
            for (int j = 0; j < e.promptLogitCount(); j++) {
                logitRows[e.promptLogitRow() + j] = queryStarts[k] + e.promptLogitPosition() - s.computed + j;
            }
            if (e.logitRow() >= 0) {
                logitRows[e.logitRow()] = row - 1;
            }
        }
        queryStarts[n] = row;
        pageTableStarts[n] = pageOffset;
        segStarts[segCount] = row;
        Segments segments = new Segments(Arrays.copyOf(segStarts, segCount + 1), Arrays.copyOf(segSlots, segCount));
        AttentionBatch attention = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables,
                slotMapping, pageSize);
        ForwardBatch restricted = ForwardBatch.restrictToLogitRows(tokens, positions, attention, segments, logitRows);
        return new ForwardBatch(tokens, positions, attention, segments, logitRows, restricted);
    }

    /**
     * A decode step (every sequence one row, every row sampled) padded to its bucket with one-token
     * sequences in the padding page that use no adapter; null when {@code batch} is not such a step. The
     * real rows stay first.
     */
    private ForwardBatch padDecodeStep(ForwardBatch batch) {
        AttentionBatch att = batch.attention();
        int n = batch.rows();
        if (att.numSequences() != n || batch.logitRows().length != n || batch.lastLayerRows() != null
                || att.pageSize() != kv.pageSize()) {
            return null;
        }
        for (int r = 0; r < n; r++) {
            if (batch.logitRows()[r] != r || att.queryStarts()[r] != r) {
                return null;
            }
        }
        int bucket = -1;
        for (int b : buckets) {
            if (b >= n) {
                bucket = b;
                break;
            }
        }
        if (bucket < 0) {
            return null;
        }
        int pad = bucket - n;
        int pages = att.pageTables().length;
        int paddingSlot = paddingPage * att.pageSize();
        int[] tokens = Arrays.copyOf(batch.tokens(), bucket); // padding token 0, position 0
        int[] positions = Arrays.copyOf(batch.positions(), bucket);
        int[] queryStarts = new int[bucket + 1];
        int[] contextLens = Arrays.copyOf(att.contextLens(), bucket);
        int[] pageTableStarts = Arrays.copyOf(att.pageTableStarts(), bucket + 1);
        // The page-table array's length is part of what a recording fixes: round it up to a power of two
        // (the unused tail names the padding page), so that it changes only when contexts double.
        int pageTableLength = Math.max(64, Integer.highestOneBit(Math.max(1, pages + pad - 1)) << 1);
        int[] pageTables = Arrays.copyOf(att.pageTables(), pageTableLength);
        Arrays.fill(pageTables, pages, pageTableLength, paddingPage);
        int[] slotMapping = Arrays.copyOf(att.slotMapping(), bucket);
        int[] logitRows = new int[bucket];
        for (int r = 0; r <= bucket; r++) {
            queryStarts[r] = r;
        }
        for (int r = 0; r < bucket; r++) {
            logitRows[r] = r;
        }
        for (int i = 0; i < pad; i++) {
            contextLens[n + i] = 1;
            pageTableStarts[n + i] = pages + i;
            slotMapping[n + i] = paddingSlot;
        }
        pageTableStarts[bucket] = pages + pad;
        Segments segments = batch.segments();
        if (pad > 0) {
            int count = segments.count();
            int[] starts = Arrays.copyOf(segments.starts(), count + 2);
            int[] slots = Arrays.copyOf(segments.slots(), count + 1);
            starts[count + 1] = bucket;
            slots[count] = -1;
            segments = new Segments(starts, slots);
        }
        AttentionBatch paddedAttention = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables,
                slotMapping, att.pageSize());
        return new ForwardBatch(tokens, positions, paddedAttention, segments, logitRows, null);
    }
}
