package ai.punica.backend;

/**
 * What the tensors of the host backends (CPU, reference) share: a name for messages, a row-major shape,
 * and whether this is a view made by {@link #firstRows} (views share their tensor's storage and are not
 * freed on their own). Subclasses add the storage and make the views.
 */
public abstract class RowMajorTensor implements Tensor {
    private final String name;
    private final int rows;
    private final int cols;
    private final boolean view;

    protected RowMajorTensor(String name, int rows, int cols, boolean view) {
        this.name = name;
        this.rows = rows;
        this.cols = cols;
        this.view = view;
    }

    @Override
    public final int rows() {
        return rows;
    }

    @Override
    public final int cols() {
        return cols;
    }

    public final String name() {
        return name;
    }

    /** True for a tensor made by {@link #firstRows}, which its backend refuses to free. */
    public final boolean isView() {
        return view;
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
