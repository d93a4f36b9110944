package ai.punica.backend.cuda;

import java.util.Arrays;

/**
 * A launch as a step graph records it: kernel, grid, block, shared memory, the stream (main or side) and the
 * argument words. A cuBLAS GEMM is recorded as function 0 with its shape and pointers.
 */
record LaunchRecord(long function, int gx, int gy, int gz, int threads, int smem, boolean side, long[] args) {
    boolean sameAs(LaunchRecord o) {
        return function == o.function && gx == o.gx && gy == o.gy && gz == o.gz && threads == o.threads
                && smem == o.smem && side == o.side && Arrays.equals(args, o.args);
    }

    @Override
    public String toString() {
        return "launch 0x" + Long.toHexString(function) + " grid " + gx + "x" + gy + "x" + gz
                + (side ? " (side stream)" : "") + " args " + Arrays.toString(args);
    }
}
