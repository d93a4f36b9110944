package ai.punica.backend.reference;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.DType;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.ScalarSampler;
import ai.punica.backend.Segments;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The oracle: every operation of {@link Backend} as the plainest scalar loop that computes its
 * definition, with sums accumulated in double. Weights keep their stored dtype and each element is
 * converted to float when read; activations are float32. Every other backend is tested against this
 * one, so nothing here is clever.
 */
public final class ReferenceBackend implements Backend {

    private final ScalarSampler sampler = new ScalarSampler();
    private int nextActivation;

    @Override
    public String name() {
        return "reference";
    }

    // ---- memory ---------------------------------------------------------------------------------

    @Override
    public Tensor allocate(int rows, int cols) {
        if (rows < 0 || cols < 0 || (long) rows * cols > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("allocate: [" + rows + ", " + cols + "] is negative or too large");
        }
        String name = "activation#" + nextActivation++;
        return new ReferenceTensor(this, new ReferenceTensor.Storage(new float[rows * cols], null), name, rows, cols, false);
    }

    @Override
    public Tensor loadWeight(TensorData weight) {
        int[] shape = weight.matrixShape("loadWeight");
        int rows = shape[0];
        int cols = shape[1];
        if (weight.data().byteSize() < weight.elementCount() * weight.dtype().byteSize()) {
            throw new IllegalArgumentException("loadWeight: " + weight + " has only " + weight.data().byteSize() + " bytes");
        }
        return new ReferenceTensor(this, new ReferenceTensor.Storage(null, weight), weight.name(), rows, cols, false);
    }

    @Override
    public Tensor concatRows(String name, List<TensorData> parts) {
        if (parts.isEmpty()) {
            throw new IllegalArgumentException("concatRows " + name + ": no parts");
        }
        if (parts.stream().allMatch(p -> p.rank() == 1)) {
            return loadWeight(TensorData.concatVectors(name, parts)); // fused bias: one [1, Σn] row
        }
        DType dtype = parts.getFirst().dtype();
        long cols = parts.getFirst().shape().length == 2 ? parts.getFirst().dim(1) : parts.getFirst().dim(0);
        long rows = 0;
        for (TensorData part : parts) {
            long partCols = part.shape().length == 2 ? part.dim(1) : part.dim(0);
            if (part.dtype() != dtype || partCols != cols || part.rank() > 2) {
                throw new IllegalArgumentException("concatRows " + name + ": " + part + " does not match "
                        + parts.getFirst() + " (same dtype and columns needed)");
            }
            rows += part.elementCount() / cols;
        }
        MemorySegment data = MemorySegment.ofArray(new byte[Math.toIntExact(rows * cols * dtype.byteSize())]);
        long offset = 0;
        for (TensorData part : parts) {
            long bytes = part.elementCount() * dtype.byteSize();
            MemorySegment.copy(part.data(), 0, data, offset, bytes);
            offset += bytes;
        }
        return loadWeight(new TensorData(name, dtype, new long[] {rows, cols}, data));
    }

    @Override
    public void upload(float[] src, Tensor dst) {
        ReferenceTensor d = activation("upload", "dst", dst);
        int n = d.rows() * d.cols();
        if (src.length < n) {
            throw ShapeChecks.fail("upload", src.length + " floats for dst " + dst + " (" + n + " needed)");
        }
        System.arraycopy(src, 0, d.storage.values, 0, n);
    }

    @Override
    public void download(Tensor src, float[] dst) {
        ReferenceTensor s = own("download", "src", src);
        int n = s.rows() * s.cols();
        if (dst.length < n) {
            throw ShapeChecks.fail("download", dst.length + " floats for src " + src + " (" + n + " needed)");
        }
        for (int r = 0; r < s.rows(); r++) {
            for (int c = 0; c < s.cols(); c++) {
                dst[r * s.cols() + c] = s.get(r, c);
            }
        }
    }

    @Override
    public void free(Tensor tensor) {
        ReferenceTensor t = own("free", "tensor", tensor);
        if (t.isView()) {
            throw ShapeChecks.fail("free", tensor + " is a view (firstRows); free the tensor it came from");
        }
        t.storage.freed = true;
    }

    // ---- dense operations -----------------------------------------------------------------------

    @Override
    public void embedding(Tensor table, int[] tokenIds, Tensor out) {
        ReferenceTensor t = own("embedding", "table", table);
        ReferenceTensor o = activation("embedding", "out", out);
        ShapeChecks.requireShape("embedding", "out", out, tokenIds.length, table.cols());
        for (int r = 0; r < tokenIds.length; r++) {
            int id = tokenIds[r];
            if (!(id >= 0 && id < table.rows())) {
                throw ShapeChecks.fail("embedding", "tokenIds[" + r + "] = " + id + " is outside table " + table);
            }
            for (int c = 0; c < table.cols(); c++) {
                o.set(r, c, t.get(id, c));
            }
        }
    }

    /** out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight. */
    @Override
    public void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out) {
        ReferenceTensor xs = activation("rmsNorm", "x", x);
        ReferenceTensor w = own("rmsNorm", "weight", weight);
        ReferenceTensor o = activation("rmsNorm", "out", out);
        ShapeChecks.checkRmsNorm("rmsNorm", x, weight, out);
        int n = x.cols();
        for (int r = 0; r < x.rows(); r++) {
            double sumSquares = 0;
            for (int c = 0; c < n; c++) {
                double v = xs.get(r, c);
                sumSquares += v * v;
            }
            double inv = 1.0 / Math.sqrt(sumSquares / n + eps);
            for (int c = 0; c < n; c++) {
                o.set(r, c, (float) (xs.get(r, c) * inv * w.get(0, c)));
            }
        }
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        ReferenceTensor as = activation("add", "a", a);
        ReferenceTensor bs = activation("add", "b", b);
        ReferenceTensor o = activation("add", "out", out);
        ShapeChecks.checkAdd("add", "b", a, b, out);
        for (int r = 0; r < a.rows(); r++) {
            for (int c = 0; c < a.cols(); c++) {
                o.set(r, c, as.get(r, c) + bs.get(r, c));
            }
        }
    }

    /** out[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[0, o]). */
    @Override
    public void matmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        ReferenceTensor xs = activation("matmul", "x", x);
        ReferenceTensor ws = own("matmul", "w", w);
        ReferenceTensor bs = bias == null ? null : own("matmul", "bias", bias);
        ReferenceTensor o = activation("matmul", "out", out);
        ShapeChecks.checkMatmul(x, w, bias, out);
        if (o.storage == xs.storage) {
            throw ShapeChecks.fail("matmul", "out " + out + " must not share storage with x");
        }
        for (int r = 0; r < x.rows(); r++) {
            for (int j = 0; j < w.rows(); j++) {
                double sum = 0;
                for (int i = 0; i < x.cols(); i++) {
                    sum += (double) xs.get(r, i) * ws.get(j, i);
                }
                if (bs != null) {
                    sum += bs.get(0, j);
                }
                o.set(r, j, (float) sum);
            }
        }
    }

    /**
     * Rotate-half RoPE (HF convention): θ = (float) pos · invFreq[i] in float32,
     * x'[i] = x[i]·cos θ·f − x[i+d/2]·sin θ·f, x'[i+d/2] = x[i+d/2]·cos θ·f + x[i]·sin θ·f.
     */
    @Override
    public void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        ReferenceTensor xs = activation("rope", "x", x);
        ShapeChecks.checkRope(x, positions, rope, numHeads, headDim);
        int half = headDim / 2;
        for (int r = 0; r < x.rows(); r++) {
            for (int i = 0; i < half; i++) {
                float theta = (float) positions[r] * rope.invFreq(i);
                double cos = (float) Math.cos(theta) * rope.attentionFactor();
                double sin = (float) Math.sin(theta) * rope.attentionFactor();
                for (int h = 0; h < numHeads; h++) {
                    int c = h * headDim + i;
                    double x1 = xs.get(r, c);
                    double x2 = xs.get(r, c + half);
                    xs.set(r, c, (float) (x1 * cos - x2 * sin));
                    xs.set(r, c + half, (float) (x2 * cos + x1 * sin));
                }
            }
        }
    }

    /** out[r, i] = silu(g) · u with g = gateUp[r, i], u = gateUp[r, I + i], silu(g) = g / (1 + e^−g). */
    @Override
    public void swiglu(Tensor gateUp, Tensor out) {
        ReferenceTensor gu = activation("swiglu", "gateUp", gateUp);
        ReferenceTensor o = activation("swiglu", "out", out);
        if (gateUp.cols() % 2 != 0) {
            throw ShapeChecks.fail("swiglu", "gateUp " + gateUp + " has an odd number of columns");
        }
        int inter = gateUp.cols() / 2;
        ShapeChecks.requireShape("swiglu", "out", out, gateUp.rows(), inter);
        for (int r = 0; r < gateUp.rows(); r++) {
            for (int i = 0; i < inter; i++) {
                double g = gu.get(r, i);
                double u = gu.get(r, inter + i);
                o.set(r, i, (float) (g / (1 + Math.exp(-g)) * u));
            }
        }
    }

    @Override
    public void gatherRows(Tensor x, int[] rows, Tensor out) {
        ReferenceTensor xs = activation("gatherRows", "x", x);
        ReferenceTensor o = activation("gatherRows", "out", out);
        ShapeChecks.requireShape("gatherRows", "out", out, rows.length, x.cols());
        for (int i = 0; i < rows.length; i++) {
            if (!(rows[i] >= 0 && rows[i] < x.rows())) {
                throw ShapeChecks.fail("gatherRows", "rows[" + i + "] = " + rows[i] + " is outside x " + x);
            }
            for (int c = 0; c < x.cols(); c++) {
                o.set(i, c, xs.get(rows[i], c));
            }
        }
    }

    // ---- paged KV cache and attention -----------------------------------------------------------

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        return ReferenceKvStorage.allocate(numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    @Override
    public void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        ReferenceKvStorage cache = kv("appendKv", kv);
        ReferenceTensor q = activation("appendKv", "qkv", qkv);
        ShapeChecks.checkAppendKv(kv, layer, qkv, kCol, vCol, slotMapping);
        int kvCols = cache.kvCols();
        for (int r = 0; r < qkv.rows(); r++) {
            for (int c = 0; c < kvCols; c++) {
                cache.keys()[layer][slotMapping[r] * kvCols + c] = q.get(r, kCol + c);
                cache.values()[layer][slotMapping[r] * kvCols + c] = q.get(r, vCol + c);
            }
        }
    }

    /**
     * For query row at position p of sequence s and head h (KV head g = h / (numHeads / numKvHeads)):
     * keys t in [lo, p] with lo = 0, or p − slidingWindow + 1 when a window is set;
     * out[row, h] = Σ_t e^(s_t − max) · v_t / Σ_t e^(s_t − max), s_t = scale · q_h · k_t.
     */
    @Override
    public void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out) {
        ReferenceKvStorage cache = kv("attention", kv);
        ReferenceTensor q = activation("attention", "qkv", qkv);
        ReferenceTensor o = activation("attention", "out", out);
        ShapeChecks.checkAttention(qkv, kv, layer, batch, shape, out);
        int d = shape.headDim();
        int group = shape.numHeads() / shape.numKvHeads();
        float[] keys = cache.keys()[layer];
        float[] values = cache.values()[layer];
        for (int s = 0; s < batch.numSequences(); s++) {
            for (int row = batch.queryStarts()[s]; row < batch.queryStarts()[s + 1]; row++) {
                int p = batch.position(s, row);
                int lo = shape.slidingWindow() > 0 ? Math.max(0, p - shape.slidingWindow() + 1) : 0;
                for (int h = 0; h < shape.numHeads(); h++) {
                    int kvHead = h / group;
                    double[] scores = new double[p - lo + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int t = lo; t <= p; t++) {
                        int base = batch.slotOf(s, t) * cache.kvCols() + kvHead * d;
                        double dot = 0;
                        for (int j = 0; j < d; j++) {
                            dot += (double) q.get(row, h * d + j) * keys[base + j];
                        }
                        scores[t - lo] = shape.scale() * dot;
                        max = Math.max(max, scores[t - lo]);
                    }
                    double sum = 0;
                    for (int i = 0; i < scores.length; i++) {
                        scores[i] = Math.exp(scores[i] - max);
                        sum += scores[i];
                    }
                    for (int j = 0; j < d; j++) {
                        double acc = 0;
                        for (int t = lo; t <= p; t++) {
                            acc += scores[t - lo] * values[batch.slotOf(s, t) * cache.kvCols() + kvHead * d + j];
                        }
                        o.set(row, h * d + j, (float) (acc / sum));
                    }
                }
            }
        }
    }

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    /** v[r, vCol:vCol+rank] = x[r] · A_slotᵀ for the rows of each segment with an adapter. */
    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol) {
        ReferenceTensor xs = activation("sgmvShrink", "x", x);
        ReferenceTensor vs = activation("sgmvShrink", "v", v);
        ShapeChecks.checkSegments("sgmvShrink", segments, weights, Math.min(x.rows(), v.rows()));
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (!weights.present(slot)) {
                continue;
            }
            ShapeChecks.checkLoraA("sgmvShrink", weights, slot, x.cols());
            ReferenceTensor a = own("sgmvShrink", "lora A", weights.a()[slot]);
            int rank = weights.rank()[slot];
            ShapeChecks.checkRankColumns("sgmvShrink", v, vCol, rank, slot);
            for (int r = segments.starts()[i]; r < segments.starts()[i + 1]; r++) {
                for (int k = 0; k < rank; k++) {
                    double sum = 0;
                    for (int c = 0; c < x.cols(); c++) {
                        sum += (double) xs.get(r, c) * a.get(k, c);
                    }
                    vs.set(r, vCol + k, (float) sum);
                }
            }
        }
    }

    /** y[r, yCol + o] += scale_slot · Σ_k v[r, vCol + k] · B_slot[o, k] for the rows of each segment with an adapter. */
    @Override
    public void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        ReferenceTensor vs = activation("sgmvExpand", "v", v);
        ReferenceTensor ys = activation("sgmvExpand", "y", y);
        ShapeChecks.checkSegments("sgmvExpand", segments, weights, Math.min(v.rows(), y.rows()));
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (!weights.present(slot)) {
                continue;
            }
            ShapeChecks.checkExpandSlot("sgmvExpand", weights, slot, v, vCol, y, yCol);
            ReferenceTensor b = own("sgmvExpand", "lora B", weights.b()[slot]);
            int rank = weights.rank()[slot];
            for (int r = segments.starts()[i]; r < segments.starts()[i + 1]; r++) {
                for (int o = 0; o < b.rows(); o++) {
                    double sum = 0;
                    for (int k = 0; k < rank; k++) {
                        sum += (double) vs.get(r, vCol + k) * b.get(o, k);
                    }
                    ys.set(r, yCol + o, (float) (ys.get(r, yCol + o) + weights.scale()[slot] * sum));
                }
            }
        }
    }

    // ---- sampling -------------------------------------------------------------------------------

    @Override
    public boolean supportsSampling() {
        return true;
    }

    /** Each row by {@link ScalarSampler}, the definition itself. */
    @Override
    public List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        ReferenceTensor l = activation("sample", "logits", logits);
        ShapeChecks.checkSampling(logits, batch);
        int vocab = logits.cols();
        float[] row = new float[vocab];
        List<SampledToken> out = new ArrayList<>(batch.size());
        for (int r = 0; r < batch.size(); r++) {
            for (int c = 0; c < vocab; c++) {
                row[c] = l.get(r, c);
            }
            out.add(sampler.sample(row, 0, vocab, batch, r));
        }
        return out;
    }

    @Override
    public void close() {
        // Nothing native to release: everything lives on the Java heap.
    }

    // ---- argument checks ------------------------------------------------------------------------

    private ReferenceTensor own(String op, String role, Tensor t) {
        if (t == null) {
            throw ShapeChecks.fail(op, role + " is null");
        }
        if (!(t instanceof ReferenceTensor rt) || rt.owner != this) {
            throw ShapeChecks.fail(op, role + " " + t + " was not made by this reference backend");
        }
        if (rt.storage.freed) {
            throw ShapeChecks.fail(op, role + " " + t + " was freed");
        }
        return rt;
    }

    private ReferenceTensor activation(String op, String role, Tensor t) {
        ReferenceTensor rt = own(op, role, t);
        if (rt.isWeight()) {
            throw ShapeChecks.fail(op, role + " " + t + " is a weight; an activation from allocate() is needed");
        }
        return rt;
    }

    private static ReferenceKvStorage kv(String op, KvStorage kv) {
        if (!(kv instanceof ReferenceKvStorage r)) {
            throw ShapeChecks.fail(op, "KV storage " + kv + " was not made by a reference backend");
        }
        return r;
    }
}
