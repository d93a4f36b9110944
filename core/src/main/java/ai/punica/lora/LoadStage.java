package ai.punica.lora;

/** The two stages of putting an adapter where the kernels read it; each load's time is reported per stage. */
public enum LoadStage {
    /** Files to host memory: read, validate and copy ({@link LoraAdapter#load}), on a loader thread. */
    DISK,
    /**
     * Host memory to a backend slot: from the start of the asynchronous copy until the engine thread sees it
     * complete (so it includes up to one step of polling delay on a GPU).
     */
    DEVICE;

    /** The label value in metrics. */
    public String label() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
