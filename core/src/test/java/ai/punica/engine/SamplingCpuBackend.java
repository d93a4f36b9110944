package ai.punica.engine;

import ai.punica.backend.AlwaysAvailableProvider;
import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
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
import ai.punica.backend.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.List;

/**
 * The CPU backend with {@link Backend#sample} ({@code ScalarSampler} on the downloaded logits), so that
 * engine tests run the engine's sampling-on-the-backend path at CPU speed. Registered for core's tests
 * as backend "cpu-sampling".
 */
final class SamplingCpuBackend implements Backend {
    private final CpuBackend cpu = new CpuBackend();
    private final ScalarSampler sampler = new ScalarSampler();

    /** The test-only provider (META-INF/services in core's test resources), never chosen by "auto". */
    public static final class Provider extends AlwaysAvailableProvider {
        public Provider() {
            super("cpu-sampling", -1, SamplingCpuBackend::new);
        }
    }

    @Override
    public boolean supportsSampling() {
        return true;
    }

    @Override
    public List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        ShapeChecks.checkSampling(logits, batch);
        int vocab = logits.cols();
        float[] values = new float[logits.rows() * vocab];
        cpu.download(logits, values);
        List<SampledToken> out = new ArrayList<>(batch.size());
        for (int r = 0; r < batch.size(); r++) {
            out.add(sampler.sample(values, r * vocab, vocab, batch, r));
        }
        return out;
    }

    @Override
    public String name() {
        return "cpu-sampling";
    }

    @Override
    public Tensor allocate(int rows, int cols) {
        return cpu.allocate(rows, cols);
    }

    @Override
    public Tensor loadWeight(TensorData weight) {
        return cpu.loadWeight(weight);
    }

    @Override
    public Tensor concatRows(String name, List<TensorData> parts) {
        return cpu.concatRows(name, parts);
    }

    @Override
    public void upload(float[] src, Tensor dst) {
        cpu.upload(src, dst);
    }

    @Override
    public void download(Tensor src, float[] dst) {
        cpu.download(src, dst);
    }

    @Override
    public void free(Tensor tensor) {
        cpu.free(tensor);
    }

    @Override
    public void embedding(Tensor table, int[] tokenIds, Tensor out) {
        cpu.embedding(table, tokenIds, out);
    }

    @Override
    public void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out) {
        cpu.rmsNorm(x, weight, eps, out);
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        cpu.add(a, b, out);
    }

    @Override
    public void zero(Tensor t) {
        cpu.zero(t);
    }

    @Override
    public void matmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        cpu.matmul(x, w, bias, out);
    }

    @Override
    public void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        cpu.rope(x, positions, rope, numHeads, headDim);
    }

    @Override
    public void swiglu(Tensor gateUp, Tensor out) {
        cpu.swiglu(gateUp, out);
    }

    @Override
    public void gatherRows(Tensor x, int[] rows, Tensor out) {
        cpu.gatherRows(x, rows, out);
    }

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        return cpu.allocateKv(numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    @Override
    public int kvBytesPerElement() {
        return cpu.kvBytesPerElement();
    }

    @Override
    public void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        cpu.appendKv(kv, layer, qkv, kCol, vCol, slotMapping);
    }

    @Override
    public void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out) {
        cpu.attention(qkv, kv, layer, batch, shape, out);
    }

    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol) {
        cpu.sgmvShrink(x, weights, segments, v, vCol);
    }

    @Override
    public void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        cpu.sgmvExpand(v, vCol, weights, segments, y, yCol);
    }

    @Override
    public void close() {
        cpu.close();
    }
}
