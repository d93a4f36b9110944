package ai.punica.backend.reference;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.HostBackend;
import ai.punica.backend.KvStorage;
import ai.punica.backend.RopeTable;
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.ScalarSampler;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import java.util.ArrayList;
import java.util.List;

/**
 * The oracle: every operation of {@link Backend} as the plainest scalar loop that computes its
 * definition, with sums accumulated in double. Weights keep their stored dtype and each element is
 * converted to float when read; activations are float32. Every other backend is tested against this
 * one, so nothing here is clever.
 */
public final class ReferenceBackend extends HostBackend<ReferenceTensor, ReferenceKvStorage> {

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
        return loadWeight(TensorData.concatRows(name, parts));
    }

    @Override
    protected void upload(float[] src, ReferenceTensor dst) {
        System.arraycopy(src, 0, dst.values(), 0, dst.rows() * dst.cols());
    }

    @Override
    protected void download(ReferenceTensor src, float[] dst) {
        for (int r = 0; r < src.rows(); r++) {
            for (int c = 0; c < src.cols(); c++) {
                dst[r * src.cols() + c] = src.get(r, c);
            }
        }
    }

    // ---- dense operations -----------------------------------------------------------------------

    /** out[r] = table[tokenIds[r]]. */
    @Override
    protected void embedding(ReferenceTensor table, int[] tokenIds, ReferenceTensor out) {
        for (int r = 0; r < tokenIds.length; r++) {
            for (int c = 0; c < table.cols(); c++) {
                out.set(r, c, table.get(tokenIds[r], c));
            }
        }
    }

    /** out[r] = x[r] / sqrt(mean(x[r]²) + eps) · weight. */
    @Override
    protected void rmsNorm(ReferenceTensor xs, ReferenceTensor w, float eps, ReferenceTensor o) {
        int n = xs.cols();
        for (int r = 0; r < xs.rows(); r++) {
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

    /** out = a + b. */
    @Override
    protected void add(ReferenceTensor a, ReferenceTensor b, ReferenceTensor out) {
        for (int r = 0; r < a.rows(); r++) {
            for (int c = 0; c < a.cols(); c++) {
                out.set(r, c, a.get(r, c) + b.get(r, c));
            }
        }
    }

    /** out[r, o] = Σ_i x[r, i] · w[o, i] (+ bias[0, o]). */
    @Override
    protected void matmul(ReferenceTensor x, ReferenceTensor w, ReferenceTensor bias, ReferenceTensor out) {
        for (int r = 0; r < x.rows(); r++) {
            for (int j = 0; j < w.rows(); j++) {
                double sum = 0;
                for (int i = 0; i < x.cols(); i++) {
                    sum += (double) x.get(r, i) * w.get(j, i);
                }
                if (bias != null) {
                    sum += bias.get(0, j);
                }
                out.set(r, j, (float) sum);
            }
        }
    }

    /**
     * Rotate-half RoPE (HF convention): θ = (float) pos · invFreq[i] in float32,
     * x'[i] = x[i]·cos θ·f − x[i+d/2]·sin θ·f, x'[i+d/2] = x[i+d/2]·cos θ·f + x[i]·sin θ·f.
     */
    @Override
    protected void rope(ReferenceTensor xs, int[] positions, RopeTable rope, int numHeads, int headDim) {
        int half = headDim / 2;
        for (int r = 0; r < xs.rows(); r++) {
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
    protected void swiglu(ReferenceTensor gateUp, ReferenceTensor out) {
        int inter = gateUp.cols() / 2;
        for (int r = 0; r < gateUp.rows(); r++) {
            for (int i = 0; i < inter; i++) {
                double g = gateUp.get(r, i);
                double u = gateUp.get(r, inter + i);
                out.set(r, i, (float) (g / (1 + Math.exp(-g)) * u));
            }
        }
    }

    /** out[i] = x[rows[i]]: the gather {@link #embedding} computes, on an activation. */
    @Override
    protected void gatherRows(ReferenceTensor x, int[] rows, ReferenceTensor out) {
        embedding(x, rows, out);
    }

    // ---- paged KV cache and attention -----------------------------------------------------------

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        return ReferenceKvStorage.allocate(numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    @Override
    protected void appendKv(ReferenceKvStorage cache, int layer, ReferenceTensor q, int kCol, int vCol,
                            int[] slotMapping) {
        int kvCols = cache.kvCols();
        for (int r = 0; r < q.rows(); r++) {
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
    protected void attention(ReferenceTensor q, ReferenceKvStorage cache, int layer, AttentionBatch batch,
                             AttentionShape shape, ReferenceTensor o) {
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

    /** v[r, vCol:vCol+rank] = x[r] · Aᵀ for the rows of each segment with an adapter. */
    @Override
    protected void sgmvShrink(ReferenceTensor x, List<LoraSegment<ReferenceTensor>> segments, ReferenceTensor v,
                              int vCol) {
        for (LoraSegment<ReferenceTensor> s : segments) {
            rowsTimesWeight(x, 0, x.cols(), s.weight(), s.from(), s.to(), 1, false, v, vCol);
        }
    }

    /** y[r, yCol + o] += scale · Σ_k v[r, vCol + k] · B[o, k] for the rows of each segment with an adapter. */
    @Override
    protected void sgmvExpand(ReferenceTensor v, int vCol, List<LoraSegment<ReferenceTensor>> segments,
                              ReferenceTensor y, int yCol) {
        for (LoraSegment<ReferenceTensor> s : segments) {
            rowsTimesWeight(v, vCol, s.rank(), s.weight(), s.from(), s.to(), s.scale(), true, y, yCol);
        }
    }

    /**
     * For rows r in [from, to) and every row j of w: {@code sum = Σ_{i<k} in[r, inCol + i] · w[j, i]} in double,
     * then {@code out[r, outCol + j] = sum}, or {@code += scale · sum} when accumulating (the LoRA expand).
     */
    private static void rowsTimesWeight(ReferenceTensor in, int inCol, int k, ReferenceTensor w, int from, int to,
                                        float scale, boolean accumulate, ReferenceTensor out, int outCol) {
        for (int r = from; r < to; r++) {
            for (int j = 0; j < w.rows(); j++) {
                double sum = 0;
                for (int i = 0; i < k; i++) {
                    sum += (double) in.get(r, inCol + i) * w.get(j, i);
                }
                out.set(r, outCol + j, (float) (accumulate ? out.get(r, outCol + j) + scale * sum : sum));
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

    @Override
    protected ReferenceKvStorage kv(String op, KvStorage kv) {
        if (!(kv instanceof ReferenceKvStorage r)) {
            throw ShapeChecks.fail(op, "KV storage " + kv + " was not made by a reference backend");
        }
        return r;
    }
}
