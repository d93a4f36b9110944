package ai.punica.backend;

/**
 * What the tensors of the host backends (CPU, reference) share: the backend that made them, a name for
 * messages, a row-major shape, storage shared with the views made by {@link #firstRows} (views are not
 * freed on their own; freeing the tensor invalidates them all). {@link HostBackend} checks them.
 * Subclasses add what their storage holds and make the views.
 *
 * @param <S> the storage of the subclass
 */
public abstract class RowMajorTensor<S extends RowMajorTensor.Storage> implements Tensor {

    /** Shared by a tensor and its views: the dtype, whether it is a weight, and whether it was freed. */
    public abstract static class Storage {
        private final DType dtype;
        private final boolean weight;
        private boolean freed;

        protected Storage(DType dtype, boolean weight) {
            this.dtype = dtype;
            this.weight = weight;
        }

        public final boolean freed() {
            return freed;
        }
    }

    private final Backend owner;
    private final String name;
    private final int rows;
    private final int cols;
    private final boolean view;
    protected final S storage;

    protected RowMajorTensor(Backend owner, S storage, String name, int rows, int cols, boolean view) {
        this.owner = owner;
        this.storage = storage;
        this.name = name;
        this.rows = rows;
        this.cols = cols;
        this.view = view;
    }

    /** A view of the first {@code rows} rows of {@code of}: the same backend, storage, name and columns. */
    protected RowMajorTensor(RowMajorTensor<S> of, int rows) {
        this(of.owner, of.storage, of.name, rows, of.cols, true);
    }

    @Override
    public final int rows() {
        return rows;
    }

    @Override
    public final int cols() {
        return cols;
    }

    @Override
    public final DType dtype() {
        return shared().dtype;
    }

    public final String name() {
        return name;
    }

    /** The backend that made this tensor. */
    protected final Backend owner() {
        return owner;
    }

    /** True for a tensor made by {@link #firstRows}, which its backend refuses to free. */
    public final boolean isView() {
        return view;
    }

    /** A weight (loaded, read by operations) rather than an activation made by {@code allocate}. */
    public final boolean isWeight() {
        return shared().weight;
    }

    /** Whether this tensor and {@code other} are (views of) the same storage. */
    public final boolean sharesStorage(RowMajorTensor<?> other) {
        return storage == other.storage;
    }

    /** Marks the storage freed: this tensor and its views are refused from now on ({@link HostBackend#free}). */
    final void markFreed() {
        shared().freed = true;
    }

    /** Whether operations must refuse this tensor: its storage was freed (subclasses add: its backend closed). */
    protected boolean released() {
        return shared().freed;
    }

    /** The storage as this class sees it (its fields are private to it). */
    private Storage shared() {
        return storage;
    }

    @Override
    public final Tensor firstRows(int n) {
        if (n < 0 || n > rows) {
            throw new IllegalArgumentException("firstRows: " + n + " rows of " + this);
        }
        return view(n);
    }

    /** A view of the first {@code n} rows over the same storage. */
    protected abstract Tensor view(int n);

    @Override
    public String toString() {
        return name + " [" + rows + ", " + cols + "] " + dtype();
    }
}
