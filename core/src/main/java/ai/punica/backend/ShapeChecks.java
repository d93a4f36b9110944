package ai.punica.backend;

import java.util.BitSet;

/**
 * Argument checks shared by every backend. Each failure is an {@link IllegalArgumentException} whose
 * message names the operation, the tensor and the shapes involved, e.g.
 * {@code "matmul: x [3, 4095] F32 has 4095 columns, w model.layers.0.q_proj.weight [4096, 4096] BF16 needs 4096"}.
 * Only shapes and indices are checked here; which tensors a backend accepts is checked by the backend.
 */
public final class ShapeChecks {
    private ShapeChecks() {
    }

    public static IllegalArgumentException fail(String op, String message) {
        return new IllegalArgumentException(op + ": " + message);
    }

    /** {@code t} is float32 (activations are). */
    public static void requireF32(String op, String role, Tensor t) {
        if (t.dtype() != DType.F32) {
            throw fail(op, role + " " + t + " must be a float32 activation, not " + t.dtype());
        }
    }

    /** {@code upload}/{@code download}: a host array of at least the tensor's {@code rows · cols} floats. */
    public static void requireFloats(String op, String role, Tensor t, int floats) {
        int n = t.rows() * t.cols();
        if (floats < n) {
            throw fail(op, floats + " floats for " + role + " " + t + " (" + n + " needed)");
        }
    }

    public static void requireShape(String op, String role, Tensor t, int rows, int cols) {
        if (t.rows() != rows || t.cols() != cols) {
            throw fail(op, role + " " + t + " must be [" + rows + ", " + cols + "]");
        }
    }

    public static void requireCols(String op, String role, Tensor t, int cols, String why) {
        if (t.cols() != cols) {
            throw fail(op, role + " " + t + " has " + t.cols() + " columns, " + why + " needs " + cols);
        }
    }

    public static void requireRows(String op, String role, Tensor t, int rows, String why) {
        if (t.rows() != rows) {
            throw fail(op, role + " " + t + " has " + t.rows() + " rows, " + why + " needs " + rows);
        }
    }

    public static void requireAtLeastRows(String op, String role, Tensor t, int rows, String why) {
        if (t.rows() < rows) {
            throw fail(op, role + " " + t + " has " + t.rows() + " rows, " + why + " needs at least " + rows);
        }
    }

    /** {@code embedding}: out [ids, table cols], every id a row of the table. */
    public static void checkEmbedding(Tensor table, int[] tokenIds, Tensor out) {
        requireShape("embedding", "out", out, tokenIds.length, table.cols());
        for (int r = 0; r < tokenIds.length; r++) {
            if (!(tokenIds[r] >= 0 && tokenIds[r] < table.rows())) {
                throw fail("embedding", "tokenIds[" + r + "] = " + tokenIds[r] + " is outside table " + table);
            }
        }
    }

    /** {@code gatherRows}: out [rows, x cols], every index a row of x. */
    public static void checkGatherRows(Tensor x, int[] rows, Tensor out) {
        requireShape("gatherRows", "out", out, rows.length, x.cols());
        for (int i = 0; i < rows.length; i++) {
            if (!(rows[i] >= 0 && rows[i] < x.rows())) {
                throw fail("gatherRows", "rows[" + i + "] = " + rows[i] + " is outside x " + x);
            }
        }
    }

    /** {@code swiglu}: gateUp [R, 2I] (gate then up), out [R, I]. */
    public static void checkSwiglu(Tensor gateUp, Tensor out) {
        if (gateUp.cols() % 2 != 0) {
            throw fail("swiglu", "gateUp " + gateUp + " has an odd number of columns");
        }
        requireShape("swiglu", "out", out, gateUp.rows(), gateUp.cols() / 2);
    }

    /** {@code rmsNorm} (and the norm of {@code addRmsNorm}): weight [1, n], out the shape of x [R, n]. */
    public static void checkRmsNorm(String op, Tensor x, Tensor weight, Tensor out) {
        requireShape(op, "weight", weight, 1, x.cols());
        requireShape(op, "out", out, x.rows(), x.cols());
    }

    /** {@code add} (and the add of {@code addRmsNorm}): b and out the shape of a. */
    public static void checkAdd(String op, String bRole, Tensor a, Tensor b, Tensor out) {
        requireShape(op, bRole, b, a.rows(), a.cols());
        requireShape(op, "out", out, a.rows(), a.cols());
    }

    /** {@code matmul}: x [R, K], w [O, K], bias [1, O] or null, out [R, O]. */
    public static void checkMatmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        requireF32("matmul", "x", x);
        requireF32("matmul", "out", out);
        requireCols("matmul", "x", x, w.cols(), "w " + w);
        requireShape("matmul", "out", out, x.rows(), w.rows());
        if (bias != null) {
            requireShape("matmul", "bias", bias, 1, w.rows());
        }
    }

    /** {@code rope}: positions per row, heads within the row, head size = 2 · rope.halfDim(). */
    public static void checkRope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        requireF32("rope", "x", x);
        if (positions.length != x.rows()) {
            throw fail("rope", positions.length + " positions for x " + x + " (one per row needed)");
        }
        if (headDim != 2 * rope.halfDim()) {
            throw fail("rope", "headDim " + headDim + " but the rope table has " + rope.halfDim() + " frequencies (needs headDim / 2)");
        }
        if (!(numHeads >= 0 && (long) numHeads * headDim <= x.cols())) {
            throw fail("rope", numHeads + " heads of " + headDim + " do not fit in x " + x);
        }
        for (int r = 0; r < positions.length; r++) {
            if (positions[r] < 0) {
                throw fail("rope", "positions[" + r + "] = " + positions[r] + " is negative");
            }
        }
    }

    /** {@code appendKv}: key and value column ranges inside qkv, one valid slot per row. */
    public static void checkAppendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        requireF32("appendKv", "qkv", qkv);
        int kvCols = kv.numKvHeads() * kv.headDim();
        if (!(layer >= 0 && layer < kv.numLayers())) {
            throw fail("appendKv", "layer " + layer + " of " + kv.numLayers());
        }
        if (!(kCol >= 0 && kCol + kvCols <= qkv.cols())) {
            throw fail("appendKv", "key columns [" + kCol + ", " + (kCol + kvCols) + ") are outside qkv " + qkv);
        }
        if (!(vCol >= 0 && vCol + kvCols <= qkv.cols())) {
            throw fail("appendKv", "value columns [" + vCol + ", " + (vCol + kvCols) + ") are outside qkv " + qkv);
        }
        if (slotMapping.length != qkv.rows()) {
            throw fail("appendKv", "slotMapping has " + slotMapping.length + " entries for qkv " + qkv + " (one per row needed)");
        }
        long slots = (long) kv.numPages() * kv.pageSize();
        for (int r = 0; r < slotMapping.length; r++) {
            if (!(slotMapping[r] >= 0 && slotMapping[r] < slots)) {
                throw fail("appendKv", "slotMapping[" + r + "] = " + slotMapping[r] + " is outside [0, " + slots + ")");
            }
        }
    }

    /**
     * {@code ropeAppendKv}: the keys appended are the rotated key heads, those right after the numHeads
     * query heads ({@code kCol = numHeads·headDim}, the cache holds numKvHeads heads of headDim), and the
     * values lie after the rotated heads, so that a fused kernel can write each rotated key straight into
     * the cache and copy the values untouched.
     */
    public static void checkRopeAppendKvLayout(int numHeads, int numKvHeads, int headDim, KvStorage kv, int kCol,
                                               int vCol) {
        String op = "ropeAppendKv";
        if (!(numHeads >= 0 && numKvHeads > 0 && headDim > 0)) {
            throw fail(op, numHeads + " query heads and " + numKvHeads + " KV heads of " + headDim + " (need ≥ 0, > 0, > 0)");
        }
        if (!(kv.numKvHeads() == numKvHeads && kv.headDim() == headDim)) {
            throw fail(op, numKvHeads + " KV heads of " + headDim + " but the KV storage has " + kv.numKvHeads() + " of " + kv.headDim());
        }
        if ((long) kCol != (long) numHeads * headDim) {
            throw fail(op, "kCol " + kCol + " is not where the key heads start after " + numHeads + " query heads of " + headDim + " (" + (long) numHeads * headDim + ")");
        }
        if (vCol < kCol + numKvHeads * headDim) {
            throw fail(op, "vCol " + vCol + " overlaps the rotated key columns [" + kCol + ", " + (kCol + numKvHeads * headDim) + ")");
        }
    }

    /** {@code attention}: batch consistent with qkv/out rows, heads with the KV storage, pages in range. */
    public static void checkAttention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch,
                                      AttentionShape shape, Tensor out) {
        String op = "attention";
        requireF32(op, "qkv", qkv);
        requireF32(op, "out", out);
        if (!(layer >= 0 && layer < kv.numLayers())) {
            throw fail(op, "layer " + layer + " of " + kv.numLayers());
        }
        if (!(shape.numKvHeads() == kv.numKvHeads() && shape.headDim() == kv.headDim())) {
            throw fail(op, "shape " + shape + " does not match the KV storage (" + kv.numKvHeads() + " KV heads of " + kv.headDim() + ")");
        }
        if (batch.pageSize() != kv.pageSize()) {
            throw fail(op, "batch page size " + batch.pageSize() + " but the KV storage has " + kv.pageSize());
        }
        if (shape.qCols() > qkv.cols()) {
            throw fail(op, "qkv " + qkv + " has fewer than " + shape.qCols() + " query columns");
        }
        if (shape.slidingWindow() < 0) {
            throw fail(op, "slidingWindow " + shape.slidingWindow() + " is negative");
        }
        int sequences = batch.numSequences();
        if (!(batch.queryStarts().length == sequences + 1 && batch.pageTableStarts().length == sequences + 1)) {
            throw fail(op, "queryStarts has " + batch.queryStarts().length + " and pageTableStarts " + batch.pageTableStarts().length + " entries for " + sequences + " sequences");
        }
        if (batch.queryStarts()[0] != 0) {
            throw fail(op, "queryStarts[0] = " + batch.queryStarts()[0] + ", must be 0");
        }
        requireRows(op, "qkv", qkv, batch.numRows(), "the batch's queryStarts");
        requireShape(op, "out", out, qkv.rows(), shape.qCols());
        for (int s = 0; s < sequences; s++) {
            int queries = batch.queryStarts()[s + 1] - batch.queryStarts()[s];
            int context = batch.contextLens()[s];
            if (queries < 0) {
                throw fail(op, "queryStarts is decreasing at sequence " + s);
            }
            if (context < queries) {
                throw fail(op, "sequence " + s + " has " + queries + " query rows but contextLen " + context);
            }
            int pages = (context + batch.pageSize() - 1) / batch.pageSize();
            int start = batch.pageTableStarts()[s];
            if (!(start >= 0 && start + pages <= batch.pageTables().length)) {
                throw fail(op, "sequence " + s + " needs pageTables[" + start + ", " + (start + pages) + ") of " + batch.pageTables().length);
            }
            for (int p = start; p < start + pages; p++) {
                int page = batch.pageTables()[p];
                if (!(page >= 0 && page < kv.numPages())) {
                    throw fail(op, "pageTables[" + p + "] = " + page + " is outside [0, " + kv.numPages() + ")");
                }
            }
        }
    }

    /** Segments are ordered, inside {@code rows}, and name slots that exist. */
    public static void checkSegments(String op, Segments segments, LoraWeights weights, int rows) {
        int[] starts = segments.starts();
        if (starts[0] < 0) {
            throw fail(op, "segment starts[0] = " + starts[0] + " is negative");
        }
        for (int i = 0; i < segments.count(); i++) {
            if (starts[i + 1] < starts[i]) {
                throw fail(op, "segment starts decrease at " + i + ": " + starts[i] + " > " + starts[i + 1]);
            }
            int slot = segments.slots()[i];
            if (!(slot >= -1 && slot < weights.slots())) {
                throw fail(op, "segment " + i + " names slot " + slot + " of " + weights.slots());
            }
        }
        if (segments.rows() > rows) {
            throw fail(op, "segments cover " + segments.rows() + " rows, the tensors have " + rows);
        }
    }

    /** LoRA A of a used slot is [rank, in]. */
    public static void checkLoraA(String op, LoraWeights weights, int slot, int inFeatures) {
        Tensor a = weights.a()[slot];
        int rank = weights.rank()[slot];
        if (!(a.rows() == rank && a.cols() == inFeatures)) {
            throw fail(op, "lora A of slot " + slot + " " + a + " must be [rank " + rank + ", in " + inFeatures + "]");
        }
    }

    /** Columns {@code [vCol, vCol + rank)} of the rank-space tensor v exist. */
    public static void checkRankColumns(String op, Tensor v, int vCol, int rank, int slot) {
        if (!(vCol >= 0 && vCol + rank <= v.cols())) {
            throw fail(op, "columns [" + vCol + ", " + (vCol + rank) + ") for rank " + rank + " of slot " + slot
                    + " are outside v " + v);
        }
    }

    /** LoRA B of a used slot is [out, rank]. */
    public static void checkLoraB(String op, LoraWeights weights, int slot) {
        Tensor b = weights.b()[slot];
        if (b == null) {
            throw fail(op, "lora B of slot " + slot + " is missing while A is present");
        }
        if (b.cols() != weights.rank()[slot]) {
            throw fail(op, "lora B of slot " + slot + " " + b + " must have rank " + weights.rank()[slot] + " columns");
        }
    }

    /**
     * An expand for {@code slot}: B present with the slot's rank, {@code v} at least that wide, and B's
     * output columns inside {@code y} from {@code yCol}.
     */
    public static void checkExpandSlot(String op, LoraWeights weights, int slot, Tensor v, Tensor y, int yCol) {
        checkExpandSlot(op, weights, slot, v, 0, y, yCol);
    }

    /** {@link #checkExpandSlot(String, LoraWeights, int, Tensor, Tensor, int)} reading v from column {@code vCol}. */
    public static void checkExpandSlot(String op, LoraWeights weights, int slot, Tensor v, int vCol, Tensor y, int yCol) {
        checkLoraB(op, weights, slot);
        Tensor b = weights.b()[slot];
        int rank = weights.rank()[slot];
        checkRankColumns(op, v, vCol, rank, slot);
        if (!(yCol >= 0 && yCol + b.rows() <= y.cols())) {
            throw fail(op, "columns [" + yCol + ", " + (yCol + b.rows()) + ") of lora B " + b + " are outside y " + y);
        }
    }

    /**
     * {@code sample}: one row of parameters per logit row, values in range, penalty tokens in the
     * vocabulary and listed once per row.
     */
    public static void checkSampling(Tensor logits, SamplingBatch batch) {
        String op = "sample";
        requireRows(op, "logits", logits, batch.size(), "a batch of " + batch.size() + " sampling rows");
        int vocab = logits.cols();
        BitSet listed = new BitSet();
        for (int r = 0; r < batch.size(); r++) {
            SamplingRow p = batch.row(r);
            if (!(Float.isFinite(p.temperature()) && p.temperature() >= 0)) {
                throw fail(op, "row " + r + ": temperature " + p.temperature());
            }
            if (p.topK() < -1) {
                throw fail(op, "row " + r + ": topK " + p.topK() + " (-1 or 0 mean all tokens)");
            }
            if (!(p.topP() > 0 && p.topP() <= 1)) {
                throw fail(op, "row " + r + ": topP " + p.topP() + " is outside (0, 1]");
            }
            if (!(p.minP() >= 0 && p.minP() <= 1)) {
                throw fail(op, "row " + r + ": minP " + p.minP() + " is outside [0, 1]");
            }
            if (!(Float.isFinite(p.repetitionPenalty()) && p.repetitionPenalty() > 0)) {
                throw fail(op, "row " + r + ": repetitionPenalty " + p.repetitionPenalty() + " must be positive");
            }
            if (!(Float.isFinite(p.presencePenalty()) && Float.isFinite(p.frequencyPenalty()))) {
                throw fail(op, "row " + r + ": presence/frequency penalties " + p.presencePenalty() + ", " + p.frequencyPenalty());
            }
            if (!(p.uniform() >= 0 && p.uniform() < 1)) {
                throw fail(op, "row " + r + ": uniform " + p.uniform() + " is outside [0, 1)");
            }
            if (!(p.logprobs() >= -1 && p.logprobs() <= SamplingRow.MAX_LOGPROBS)) {
                throw fail(op, "row " + r + ": logprobs " + p.logprobs() + " is outside [-1, " + SamplingRow.MAX_LOGPROBS + "]");
            }
            for (int i = batch.penaltyStarts()[r]; i < batch.penaltyStarts()[r + 1]; i++) {
                int t = batch.penaltyTokens()[i];
                if (!(t >= 0 && t < vocab)) {
                    throw fail(op, "row " + r + ": penalty token " + t + " is outside [0, " + vocab + ")");
                }
                if (batch.penaltyCounts()[i] < 0) {
                    throw fail(op, "row " + r + ": penalty count " + batch.penaltyCounts()[i] + " of token " + t + " is negative");
                }
                if (!(!listed.get(t))) {
                    throw fail(op, "row " + r + ": penalty token " + t + " is listed twice");
                }
                listed.set(t);
            }
            listed.clear();
        }
    }
}
