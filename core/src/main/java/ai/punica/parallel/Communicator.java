package ai.punica.parallel;

import ai.punica.backend.Tensor;

/**
 * The collectives one rank of a tensor-parallel group takes part in, on its own backend's tensors
 * (float32 activations). Every rank of the group calls the same operations in the same order; a call
 * returns on a rank once that rank's result is in place. Implementations: {@link InMemoryCommunicator}
 * (ranks as threads of one process, CPU) and the CUDA module's NCCL communicator.
 */
public interface Communicator extends AutoCloseable {

    int rank();

    int size();

    /** {@code t = Σ over ranks of t}, in place; every rank gets the same sum. */
    void allReduceSum(Tensor t);

    /**
     * {@code out[r·rows : (r+1)·rows, :] = local of rank r} for every rank r, where {@code local} is
     * {@code [rows, c]} and {@code out} {@code [size·rows, c]}: rank-major, NCCL's layout (a vocab-parallel
     * lm_head would want {@code [rows, size·c]}, one transpose away).
     */
    void allGather(Tensor local, Tensor out);

    /**
     * Releases ranks waiting in a collective because another rank failed: their call throws, and so does every
     * later one on any rank of the group until {@link #recover}. Called from any thread: by a rank that failed,
     * and by the coordinator after a failed step.
     */
    void abort();

    /** After an {@link #abort}, once no rank is inside a collective: the group can be used again. */
    void recover();

    @Override
    void close();
}
