package ai.punica.backend;

import java.util.List;

/**
 * Weights being copied onto a backend by {@link Backend#loadWeightsAsync}: the tensors exist at once, but
 * operations may read them only after {@link #isDone()} has returned true. Used by the engine thread only.
 */
public interface WeightUpload extends AutoCloseable {

    /** The weights on the backend, in the order they were asked for. */
    List<Tensor> tensors();

    /**
     * True once every copy has completed; never blocks.
     *
     * @throws RuntimeException if a copy failed (the upload is then of no use: close it)
     */
    boolean isDone();

    /**
     * Whether the backend's tensors go on reading the host memory they were loaded from once
     * {@link #isDone()} has returned true (the CPU backend aliases native weights in place). When false,
     * the host copy may be freed as soon as the upload is done.
     */
    default boolean readsHostMemory() {
        return true;
    }

    /** Releases the tensors; a copy still under way is abandoned first. Closing twice does nothing. */
    @Override
    void close();

    /** An upload that completed inside the call that made it, through {@link Backend#loadWeight}. */
    static WeightUpload completed(TensorMemory backend, List<Tensor> tensors) {
        return new ReleasedOnce(tensors) {
            @Override
            public boolean isDone() {
                return true;
            }

            @Override
            protected void release() {
                tensors.forEach(backend::free);
            }
        };
    }

    /** An upload of tensors known when it is made, whose {@link #close} runs {@link #release} the first time only. */
    abstract class ReleasedOnce implements WeightUpload {
        private final List<Tensor> tensors;
        private boolean closed;

        protected ReleasedOnce(List<Tensor> tensors) {
            this.tensors = tensors;
        }

        @Override
        public final List<Tensor> tensors() {
            return tensors;
        }

        @Override
        public final void close() {
            if (!closed) {
                closed = true;
                release();
            }
        }

        /** Frees the tensors and whatever else the upload holds; called once. */
        protected abstract void release();
    }
}
