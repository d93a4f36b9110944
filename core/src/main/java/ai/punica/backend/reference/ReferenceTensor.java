package ai.punica.backend.reference;

import ai.punica.backend.DType;
import ai.punica.backend.RowMajorTensor;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;

/**
 * A tensor of the {@link ReferenceBackend}: activations are a {@code float[]}, weights keep their
 * {@link TensorData} and every element is converted to float when read. Views made by
 * {@link #firstRows} share the storage (row-major, so row r starts at {@code r · cols} in both).
 */
final class ReferenceTensor extends RowMajorTensor<ReferenceTensor.Storage> {

    /** An activation's floats, or a weight's checkpoint data (the other one null). */
    static final class Storage extends RowMajorTensor.Storage {
        final float[] values;
        final TensorData weight;

        Storage(float[] values, TensorData weight) {
            super(weight == null ? DType.F32 : weight.dtype(), weight != null);
            this.values = values;
            this.weight = weight;
        }
    }

    ReferenceTensor(ReferenceBackend owner, Storage storage, String name, int rows, int cols, boolean view) {
        super(owner, storage, name, rows, cols, view);
    }

    private ReferenceTensor(ReferenceTensor of, int rows) {
        super(of, rows);
    }

    @Override
    protected Tensor view(int n) {
        return new ReferenceTensor(this, n);
    }

    /** Element (r, c) as float, whatever the stored dtype. */
    float get(int r, int c) {
        long i = (long) r * cols() + c;
        return storage.weight == null ? storage.values[(int) i] : storage.weight.getFloat(i);
    }

    void set(int r, int c, float value) {
        storage.values[r * cols() + c] = value;
    }

    /** The activation's floats, row-major. */
    float[] values() {
        return storage.values;
    }
}
