package ai.punica.parallel;

import ai.punica.backend.Backend;
import ai.punica.backend.KvStorage;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Tensor;
import ai.punica.model.ForwardBatch;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import ai.punica.model.TensorParallelRank;
import ai.punica.model.WeightSource;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;
import java.util.function.IntFunction;

/**
 * One model over N tensor-parallel ranks in this process, driven by one coordinator: the engine thread. The
 * engine sees {@link #leader()}, rank 0's {@link LlamaModel} on a {@link LeaderBackend}, as it would see a
 * whole model; the scheduler, KV page tables, adapter slots and sampler stay the engine thread's alone.
 * Per step, rank 0's model (on the engine thread) hands the same {@link ForwardBatch} to the other ranks'
 * models (each on its {@link RankWorker} thread, with its own backend and KV shard), computes its share, and
 * waits for them; the ranks meet in the all-reduces of o and down. Only rank 0 computes logits, which the
 * engine samples as usual.
 *
 * <pre>
 *  engine thread (coordinator, rank 0)           punica-tp-rank-1 … N-1
 *  ───────────────────────────────────           ──────────────────────
 *  forwardLogits(batch)
 *    stepStarting: copy adapter slot tables ───► forwardLogits(batch, own KV shard)
 *    layers: qkv, attention, o ◄── all-reduce ──► layers: qkv, attention, o
 *            gate|up, down     ◄── all-reduce ──►         gate|up, down
 *    lm_head → logits (rank 0 only)
 *    stepFinished: wait for every rank ◄──────── done (or failed: the collectives are aborted)
 * </pre>
 */
public final class TensorParallelGroup implements AutoCloseable {

    /** Makes the communicators of a group, one per rank, from the ranks' backends (all made by then). */
    @FunctionalInterface
    public interface CommunicatorFactory {
        List<Communicator> create(List<Backend> backends);
    }

    /** What {@link #load} needs besides the weights: the same sizes as {@link LlamaModel#load}. */
    public record Sizes(int maxRows, int maxLogitRows, int loraSlots, int maxLoraRank) {
    }

    private final ShardLayout layout;
    private final List<RankWorker> workers = new ArrayList<>();
    private final List<Backend> backends = new ArrayList<>();
    private final List<LlamaModel> models = new ArrayList<>();
    private final KvStorage[] peerKv;
    private List<Communicator> comms = List.of();
    private LeaderBackend leaderBackend;
    private final List<Future<?>> running = new ArrayList<>();
    /** Each LoRA tensor on rank 0 → the same adapter matrix's shard on ranks 1..N-1 (index rank - 1). */
    private final Map<Tensor, Tensor[]> peerLora = new IdentityHashMap<>();
    private boolean closed;

    private TensorParallelGroup(ShardLayout layout) {
        this.layout = layout;
        this.peerKv = new KvStorage[layout.size()];
        for (int r = 1; r < layout.size(); r++) {
            workers.add(new RankWorker(r));
        }
    }

    /**
     * Loads {@code config}'s model over {@code size} ranks: rank r's backend made by {@code backendOfRank}
     * on rank r's thread, its shard read from {@code weights} ({@link ShardedWeights}). Rank 0 is loaded on
     * the calling thread, the others at the same time on theirs. Closing the leader backend closes the group.
     *
     * @throws IllegalArgumentException naming the config field when the model does not split over {@code size}
     */
    public static TensorParallelGroup load(ModelConfig config, WeightSource weights, int size,
                                           IntFunction<Backend> backendOfRank, CommunicatorFactory communicators,
                                           Sizes sizes) {
        TensorParallelGroup group = new TensorParallelGroup(new ShardLayout(config, size));
        try {
            group.start(config, weights, backendOfRank, communicators, sizes);
            return group;
        } catch (RuntimeException | Error e) {
            try {
                if (!group.models.isEmpty() && group.models.getFirst() != null) {
                    group.models.getFirst().close();
                }
                if (group.leaderBackend != null) {
                    group.leaderBackend.close();
                } else {
                    group.close();
                }
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    private void start(ModelConfig config, WeightSource weights, IntFunction<Backend> backendOfRank,
                       CommunicatorFactory communicators, Sizes s) {
        onEveryRank(backendOfRank, backends);
        comms = List.copyOf(communicators.create(List.copyOf(backends)));
        leaderBackend = new LeaderBackend(backends.getFirst(), this);
        onEveryRank(r -> LlamaModel.load(config, new ShardedWeights(weights, layout, r),
                r == 0 ? leaderBackend : backends.get(r), s.maxRows(), s.maxLogitRows(), s.loraSlots(),
                s.maxLoraRank(), new Rank(r)), models);
    }

    /**
     * Runs {@code make} for every rank at once (rank r's on its thread, rank 0's on this one) and adds the
     * results to {@code made} in rank order, null where it failed, so that {@link #close} releases what was
     * made. Once all have finished, throws the first failure (rank 0's first; an Error wrapped).
     */
    private <T> void onEveryRank(IntFunction<T> make, List<T> made) {
        List<Future<T>> peers = new ArrayList<>();
        for (RankWorker w : workers) {
            peers.add(w.submit(() -> make.apply(w.rank())));
        }
        RuntimeException failed = null;
        try {
            made.add(make.apply(0));
        } catch (RuntimeException | Error e) {
            made.add(null);
            failed = e instanceof RuntimeException re ? re : new IllegalStateException(e);
        }
        for (Future<T> f : peers) {
            try {
                made.add(RankWorker.await(f));
            } catch (RuntimeException e) {
                made.add(null);
                failed = failed == null ? e : failed;
            }
        }
        if (failed != null) {
            throw failed;
        }
    }

    /** Rank 0's model, what the engine drives; its backend is the {@link LeaderBackend}. */
    public LlamaModel leader() {
        return models.getFirst();
    }

    public ShardLayout layout() {
        return layout;
    }

    int size() {
        return layout.size();
    }

    /** Runs {@code task} with rank r's backend on rank r's thread (rank 0: the calling thread). */
    <T> T onRank(int rank, Function<Backend, T> task) {
        if (rank == 0) {
            return task.apply(backends.getFirst());
        }
        return workers.get(rank - 1).call(() -> task.apply(backends.get(rank)));
    }

    /** Records that {@code leaderTensor} (an adapter matrix on rank 0) has {@code shards} on ranks 1..N-1. */
    void mapLora(Tensor leaderTensor, Tensor[] shards) {
        peerLora.put(leaderTensor, shards);
    }

    void unmapLora(Tensor leaderTensor) {
        peerLora.remove(leaderTensor);
    }

    /** The hooks of rank {@code rank}'s model: the shard's shapes and its all-reduce; rank 0 also drives the rest. */
    private final class Rank implements TensorParallelRank {
        private final int rank;

        Rank(int rank) {
            this.rank = rank;
        }

        @Override
        public int rank() {
            return rank;
        }

        @Override
        public int size() {
            return layout.size();
        }

        @Override
        public ModelConfig shardConfig() {
            return layout.shardConfig();
        }

        @Override
        public void allReduce(Tensor partial) {
            comms.get(rank).allReduceSum(partial);
        }

        @Override
        public void stepStarting(ForwardBatch batch) {
            if (rank == 0) {
                startPeers(batch);
            }
        }

        @Override
        public void stepFinished(Throwable failure) {
            if (rank == 0) {
                awaitPeers(failure);
            }
        }

        @Override
        public void kvAllocated(int numPages, int pageSize) {
            if (rank == 0) {
                for (RankWorker w : workers) {
                    int r = w.rank();
                    peerKv[r] = w.call(() -> models.get(r).allocateKv(numPages, pageSize));
                }
            }
        }
    }

    /** Gives every other rank the adapter slot tables rank 0 has now, in their shards, and starts its step. */
    private void startPeers(ForwardBatch batch) {
        for (RankWorker w : workers) {
            if (peerKv[w.rank()] == null) {
                throw new IllegalStateException("tensor-parallel rank " + w.rank()
                        + " has no KV storage: allocate the leader's (LlamaModel.allocateKv) before the first step");
            }
        }
        copyLoraTables();
        running.clear();
        for (RankWorker w : workers) {
            int r = w.rank();
            LlamaModel model = models.get(r);
            KvStorage kv = peerKv[r];
            Communicator comm = comms.get(r);
            running.add(w.submit(() -> {
                try {
                    model.forwardLogits(batch, kv);
                } catch (RuntimeException | Error e) {
                    comm.abort(); // the other ranks may be waiting for this one in a collective
                    throw e;
                }
                return null;
            }));
        }
    }

    /** Waits for every other rank's step; after a failure anywhere, aborts the collectives until all have left. */
    private void awaitPeers(Throwable leaderFailure) {
        boolean aborted = leaderFailure != null;
        RuntimeException peerFailure = null;
        for (Future<?> f : running) {
            while (true) {
                if (aborted) {
                    abortAll();
                }
                try {
                    f.get(aborted ? 20 : 60_000, TimeUnit.MILLISECONDS);
                    break;
                } catch (TimeoutException e) {
                    // still computing (or waiting in a collective another rank left): ask again
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    aborted = true;
                } catch (java.util.concurrent.ExecutionException e) {
                    aborted = true;
                    Throwable cause = e.getCause();
                    if (peerFailure == null) {
                        peerFailure = cause instanceof RuntimeException re ? re
                                : new IllegalStateException("tensor-parallel rank failed: " + cause, cause);
                    }
                    break;
                }
            }
        }
        running.clear();
        RuntimeException toThrow = peerFailure;
        if (toThrow != null && leaderFailure != null) {
            toThrow.addSuppressed(leaderFailure);
        }
        if (aborted) {
            try {
                comms.getFirst().recover();
            } catch (RuntimeException e) {
                // A group that cannot be reused (NCCL after an abort): this step's own error comes first.
                if (toThrow != null) {
                    toThrow.addSuppressed(e);
                } else if (leaderFailure == null) {
                    toThrow = e;
                } else {
                    leaderFailure.addSuppressed(e);
                }
            }
        }
        if (toThrow != null) {
            throw toThrow;
        }
    }

    /** Every rank's communicator aborted, so no rank waits in a collective for one that has left the step. */
    private void abortAll() {
        for (Communicator c : comms) {
            try {
                c.abort();
            } catch (RuntimeException ignored) {
                // the step is failing already; its own error is what is reported
            }
        }
    }

    /** Rank r's slot tables := rank 0's, each adapter matrix replaced by its shard on rank r. */
    private void copyLoraTables() {
        LlamaModel leader = leader();
        int layers = leader.config().numLayers();
        for (int l = 0; l < layers; l++) {
            for (Projection p : Projection.values()) {
                LoraWeights src = leader.loraWeights(l, p);
                for (int r = 1; r < size(); r++) {
                    LoraWeights dst = models.get(r).loraWeights(l, p);
                    for (int slot = 0; slot < src.slots(); slot++) {
                        dst.a()[slot] = peerShard(src.a()[slot], r, l, p);
                        dst.b()[slot] = peerShard(src.b()[slot], r, l, p);
                        dst.rank()[slot] = src.rank()[slot];
                        dst.scale()[slot] = src.scale()[slot];
                    }
                }
            }
        }
    }

    private Tensor peerShard(Tensor leaderTensor, int rank, int layer, Projection p) {
        if (leaderTensor == null) {
            return null;
        }
        Tensor[] shards = peerLora.get(leaderTensor);
        if (shards == null) {
            throw new IllegalStateException("layer " + layer + " " + p.moduleName() + ": a LoRA matrix was put in an "
                    + "adapter slot without Backend.loadWeightsAsync of the tensor-parallel leader backend, so "
                    + "rank " + rank + " has no shard of it");
        }
        return shards[rank - 1];
    }

    /** Closes every rank's model and backend (rank 0's model is the engine's to close), then the threads. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        RuntimeException failure = null;
        // Communicators first, while every rank's device context is still alive (NCCL frees device buffers).
        for (int r = 0; r < comms.size(); r++) {
            Communicator c = comms.get(r);
            try {
                if (r == 0) {
                    c.close();
                } else {
                    workers.get(r - 1).call(() -> {
                        c.close();
                        return null;
                    });
                }
            } catch (RuntimeException e) {
                failure = failure == null ? e : failure;
            }
        }
        for (RankWorker w : workers) {
            int r = w.rank();
            try {
                w.call(() -> {
                    if (r < models.size() && models.get(r) != null) {
                        models.get(r).close();
                    }
                    if (r < backends.size() && backends.get(r) != null) {
                        backends.get(r).close();
                    }
                    return null;
                });
            } catch (RuntimeException e) {
                failure = failure == null ? e : failure;
            }
            w.close();
        }
        if (leaderBackend == null && !backends.isEmpty() && backends.getFirst() != null) {
            backends.getFirst().close(); // failed before the leader backend took it over
        }
        if (failure != null) {
            throw failure;
        }
    }
}
