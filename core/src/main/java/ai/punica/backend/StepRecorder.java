package ai.punica.backend;

/**
 * Records the device work of a forward step once and replays it for later steps of the same shape (on
 * CUDA: a CUDA graph per decode batch-size bucket). The step's host code runs every time: the first time
 * for a key it runs eagerly and is then recorded; later, a replay runs the same code only to check that
 * every operation is the one recorded (same kernels, tensors and shapes) and to refresh the step's index
 * data, then launches the recording. A step whose operations differ from the recording is run eagerly
 * and recorded again, so a replay never computes something other than the step.
 */
public interface StepRecorder {

    /**
     * Runs {@code step}, replaying the recording kept under {@code key} when there is one.
     *
     * @param key what fixes the step's shape (rows, which operations run); equal keys must mean the same
     *            sequence of operations on the same tensors
     */
    void run(Object key, Runnable step);

    /** Drops every recording (their tensors are about to be freed). */
    void clear();

    /** Recordings kept now. */
    int recordings();

    /** Steps replayed from a recording, and steps recorded, since start. */
    long replays();

    long records();
}
