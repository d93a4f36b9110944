package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.Tensor;

/**
 * A row-major tensor in device memory. Views made by {@link #firstRows} share the allocation of their
 * {@link #root}; only a root is freed.
 */
final class CudaTensor implements Tensor {
    final DeviceAllocator owner;
    final long ptr;
    private final int rows;
    private final int cols;
    private final DType dtype;
    final CudaTensor root;
    boolean freed;

    CudaTensor(DeviceAllocator owner, long ptr, int rows, int cols, DType dtype, CudaTensor root) {
        this.owner = owner;
        this.ptr = ptr;
        this.rows = rows;
        this.cols = cols;
        this.dtype = dtype;
        this.root = root == null ? this : root;
    }

    @Override
    public int rows() {
        return rows;
    }

    @Override
    public int cols() {
        return cols;
    }

    @Override
    public DType dtype() {
        return dtype;
    }

    long elements() {
        return (long) rows * cols;
    }

    long bytes() {
        return elements() * dtype.byteSize();
    }

    /** Address of element (row, col). */
    long at(int row, int col) {
        return ptr + ((long) row * cols + col) * dtype.byteSize();
    }

    @Override
    public Tensor firstRows(int n) {
        if (n < 0 || n > rows) {
            throw new IllegalArgumentException("firstRows(" + n + ") of a tensor with " + rows + " rows");
        }
        return n == rows ? this : new CudaTensor(owner, ptr, n, cols, dtype, root);
    }

    @Override
    public String toString() {
        return "CudaTensor[" + rows + ", " + cols + "] " + dtype + " @0x" + Long.toHexString(ptr);
    }
}
