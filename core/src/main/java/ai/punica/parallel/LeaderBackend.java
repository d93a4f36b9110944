package ai.punica.parallel;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.AttentionShape;
import ai.punica.backend.Backend;
import ai.punica.backend.DeviceMemory;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.RopeTable;
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.Segments;
import ai.punica.backend.StepRecorder;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Rank 0's backend as the engine and the adapter manager see it: every operation is rank 0's, except that
 * adapter weights put on it ({@link #loadWeightsAsync}) are split as {@link ShardLayout} says, rank 0 keeping
 * its shard and every other rank getting its own on its backend, and that closing it closes the whole
 * group. It records no steps (no CUDA graphs under tensor parallelism yet: the other ranks' work would not
 * be in the recording).
 */
final class LeaderBackend implements Backend {
    private final Backend rank0;
    private final TensorParallelGroup group;

    LeaderBackend(Backend rank0, TensorParallelGroup group) {
        this.rank0 = rank0;
        this.group = group;
    }

    @Override
    public String name() {
        return rank0.name() + " ×" + group.size() + " (tensor parallel)";
    }

    /**
     * Adapter matrices (named {@code ….q_proj.lora_A.weight} etc., as {@code LoraAdapter} keeps them): each
     * rank gets its shard, copied on that rank's thread; the returned upload's tensors are rank 0's, and it
     * is done when every rank's copy is.
     */
    @Override
    public WeightUpload loadWeightsAsync(List<TensorData> weights) {
        int size = group.size();
        ShardLayout layout = group.layout();
        List<WeightUpload> uploads = new ArrayList<>(size);
        try {
            for (int r = 0; r < size; r++) {
                int rank = r;
                List<TensorData> shards = weights.stream().map(w -> ShardedWeights.shard(w, layout, rank)).toList();
                uploads.add(group.onRank(r, b -> b.loadWeightsAsync(shards)));
            }
        } catch (RuntimeException | Error e) {
            closeOnTheirRanks(uploads);
            throw e;
        }
        List<Tensor> leaderTensors = uploads.getFirst().tensors();
        for (int i = 0; i < leaderTensors.size(); i++) {
            Tensor[] shards = new Tensor[size - 1];
            for (int r = 1; r < size; r++) {
                shards[r - 1] = uploads.get(r).tensors().get(i);
            }
            group.mapLora(leaderTensors.get(i), shards);
        }
        return new WeightUpload.ReleasedOnce(leaderTensors) {
            @Override
            public boolean isDone() {
                for (int r = 0; r < size; r++) {
                    WeightUpload u = uploads.get(r);
                    if (!group.onRank(r, b -> u.isDone())) {
                        return false;
                    }
                }
                return true;
            }

            @Override
            protected void release() {
                leaderTensors.forEach(group::unmapLora);
                closeOnTheirRanks(uploads);
            }
        };
    }

    /** Closes rank r's upload (index r) on rank r's thread. */
    private void closeOnTheirRanks(List<WeightUpload> uploads) {
        for (int r = 0; r < uploads.size(); r++) {
            WeightUpload u = uploads.get(r);
            group.onRank(r, b -> {
                u.close();
                return null;
            });
        }
    }

    @Override
    public StepRecorder stepRecorder() {
        return null;
    }

    @Override
    public void close() {
        try {
            group.close();
        } finally {
            rank0.close();
        }
    }

    // Everything else is rank 0's.

    @Override
    public Tensor allocate(int rows, int cols) {
        return rank0.allocate(rows, cols);
    }

    @Override
    public Tensor allocateLogits(int rows, int cols) {
        return rank0.allocateLogits(rows, cols);
    }

    @Override
    public Tensor loadWeight(TensorData weight) {
        return rank0.loadWeight(weight);
    }

    @Override
    public Tensor concatRows(String name, List<TensorData> parts) {
        return rank0.concatRows(name, parts);
    }

    @Override
    public void upload(float[] src, Tensor dst) {
        rank0.upload(src, dst);
    }

    @Override
    public void download(Tensor src, float[] dst) {
        rank0.download(src, dst);
    }

    @Override
    public void free(Tensor tensor) {
        rank0.free(tensor);
    }

    @Override
    public void embedding(Tensor table, int[] tokenIds, Tensor out) {
        rank0.embedding(table, tokenIds, out);
    }

    @Override
    public void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out) {
        rank0.rmsNorm(x, weight, eps, out);
    }

    @Override
    public void add(Tensor a, Tensor b, Tensor out) {
        rank0.add(a, b, out);
    }

    @Override
    public void zero(Tensor t) {
        rank0.zero(t);
    }

    @Override
    public void addRmsNorm(Tensor x, Tensor delta, Tensor weight, float eps, Tensor out) {
        rank0.addRmsNorm(x, delta, weight, eps, out);
    }

    @Override
    public void matmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        rank0.matmul(x, w, bias, out);
    }

    @Override
    public void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        rank0.rope(x, positions, rope, numHeads, headDim);
    }

    @Override
    public void swiglu(Tensor gateUp, Tensor out) {
        rank0.swiglu(gateUp, out);
    }

    @Override
    public void gatherRows(Tensor x, int[] rows, Tensor out) {
        rank0.gatherRows(x, rows, out);
    }

    @Override
    public KvStorage allocateKv(int numLayers, int numPages, int pageSize, int numKvHeads, int headDim) {
        return rank0.allocateKv(numLayers, numPages, pageSize, numKvHeads, headDim);
    }

    @Override
    public int kvBytesPerElement() {
        return rank0.kvBytesPerElement();
    }

    @Override
    public void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        rank0.appendKv(kv, layer, qkv, kCol, vCol, slotMapping);
    }

    @Override
    public void ropeAppendKv(Tensor qkv, int[] positions, RopeTable rope, int numHeads, int numKvHeads, int headDim,
                             KvStorage kv, int layer, int kCol, int vCol, int[] slotMapping) {
        rank0.ropeAppendKv(qkv, positions, rope, numHeads, numKvHeads, headDim, kv, layer, kCol, vCol, slotMapping);
    }

    @Override
    public void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape, Tensor out) {
        rank0.attention(qkv, kv, layer, batch, shape, out);
    }

    @Override
    public void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol) {
        rank0.sgmvShrink(x, weights, segments, v, vCol);
    }

    @Override
    public void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        rank0.sgmvExpand(v, vCol, weights, segments, y, yCol);
    }

    @Override
    public void sgmvShrinkGroup(Tensor x, List<LoraWeights> group, Segments segments, Tensor v) {
        rank0.sgmvShrinkGroup(x, group, segments, v);
    }

    @Override
    public void sgmvExpandGroup(Tensor v, List<LoraWeights> group, Segments segments, Tensor y, int[] yCols) {
        rank0.sgmvExpandGroup(v, group, segments, y, yCols);
    }

    @Override
    public void matmulLora(Tensor x, Tensor w, Tensor bias, Tensor out, List<LoraWeights> group, Segments segments,
                           Tensor v, int[] yCols) {
        rank0.matmulLora(x, w, bias, out, group, segments, v, yCols);
    }

    @Override
    public boolean supportsSampling() {
        return rank0.supportsSampling();
    }

    @Override
    public List<SampledToken> sample(Tensor logits, SamplingBatch batch) {
        return rank0.sample(logits, batch);
    }

    @Override
    public Optional<DeviceMemory> deviceMemory() {
        return rank0.deviceMemory();
    }

    @Override
    public String profileReport() {
        return rank0.profileReport();
    }
}
