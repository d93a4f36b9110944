package ai.punica.backend.cuda;

/** Shape checks shared by the op families, and the integer arithmetic of launch sizes. */
final class Shapes {
    private Shapes() {
    }

    static void checkShape(int rows, int cols) {
        if (rows < 0 || cols < 1) {
            throw new IllegalArgumentException("tensor shape [" + rows + ", " + cols + "]");
        }
    }

    static void requireRows(CudaTensor t, int rows, String what) {
        if (t.rows() != rows) {
            throw new IllegalArgumentException(what + " " + t + " should have " + rows + " rows");
        }
    }

    static void requireCols(CudaTensor t, int cols, String what) {
        if (t.cols() != cols) {
            throw new IllegalArgumentException(what + " " + t + " should have " + cols + " columns");
        }
    }

    static void requireSameShape(CudaTensor a, CudaTensor b) {
        if (a.rows() != b.rows() || a.cols() != b.cols()) {
            throw new IllegalArgumentException("shapes differ: " + a + " and " + b);
        }
    }

    static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    static int roundUp(int a, int b) {
        return ceilDiv(a, b) * b;
    }

    static long roundUp(long a, long b) {
        return ceilDiv(a, b) * b;
    }
}
