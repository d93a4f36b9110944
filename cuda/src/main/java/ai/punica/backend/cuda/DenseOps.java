package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import ai.punica.backend.RopeTable;
import ai.punica.backend.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * The dense operations of a layer on bf16 tensors: row gathers (embedding lookups, logit rows), RMS norm
 * (alone and fused with the residual add), elementwise add, the projections (cuBLAS, then the bias), rope
 * and SwiGLU. One kernel each; a projection with a bias is two:
 *
 * <pre>
 *  x ─► cublasGemmEx (bf16 × bf16, fp32 accumulation) ─► out ─► add_bias ─► out
 * </pre>
 *
 * <p>Batch-invariant ({@link CudaOptions#batchInvariant()}): cuBLAS picks its algorithm, tiles and split-K by the
 * problem's shape, so the same row may be summed in another order when the step has another number of rows. The
 * projections then always call cuBLAS with {@value #INVARIANT_ROWS} rows: full pieces of x directly, the last
 * partial piece through a zero-padded scratch block (rows copied in, the product's rows copied out). Every row is
 * then computed by the same kernel at the same shape, whatever else the step holds; a GEMM is linear per row, so
 * its neighbours' values do not reach it.
 */
final class DenseOps {
    /** Rows of every cuBLAS call in batch-invariant mode. */
    static final int INVARIANT_ROWS = 64;

    private final DeviceParts parts;
    private final boolean invariant;
    private final Map<RopeTable, Long> ropeTables = new IdentityHashMap<>();
    /** Batch-invariant mode: {@value #INVARIANT_ROWS} rows of x (bf16) and of the product (up to fp32). */
    private final Scratch scratchX = new Scratch();
    private final Scratch scratchOut = new Scratch();

    DenseOps(DeviceParts parts, boolean invariant) {
        this.parts = parts;
        this.invariant = invariant;
    }

    /** A device block that only grows, zeroed when made; the old one is released once the stream is idle. */
    private final class Scratch {
        long ptr;
        long bytes;

        void ensure(long needed) {
            if (needed <= bytes) {
                return;
            }
            if (ptr != 0) {
                parts.memory().releaseWhenIdle(ptr);
            }
            ptr = parts.memory().alloc(needed);
            parts.ctx().driver.memsetD32Async(ptr, 0, needed / 4, parts.ctx().stream);
            bytes = needed;
        }
    }

    /**
     * Batch-invariant mode: makes the scratch blocks fit a weight of {@code rows × cols} (called when weights are
     * loaded, so that no step, and no graph capture, has to allocate).
     */
    void reserveFor(long rows, long cols) {
        if (!invariant) {
            return;
        }
        scratchX.ensure(INVARIANT_ROWS * cols * 2);
        scratchOut.ensure(INVARIANT_ROWS * rows * 4);
    }

    /** {@code out[i] = source[indices[i]]} (embedding lookups and logit-row gathers are the same kernel). */
    void gather(CudaTensor source, int[] indices, CudaTensor out, String what, String range) {
        Shapes.requireRows(out, indices.length, "out");
        Shapes.requireCols(out, source.cols(), "out");
        for (int index : indices) {
            if (index < 0 || index >= source.rows()) {
                throw new IllegalArgumentException(what + " " + index + " is outside " + range + " [0, " + source.rows()
                        + ")");
            }
        }
        if (indices.length == 0) {
            return;
        }
        parts.kernels().launchGatherRows(source.ptr, parts.ring().ints(indices), out.ptr, out.cols(), indices.length);
    }

    void rmsNorm(CudaTensor xs, CudaTensor w, float eps, CudaTensor o) {
        checkRmsNorm(xs, w, o);
        if (xs.rows() == 0) {
            return;
        }
        parts.kernels().launchRmsNorm(xs.ptr, w.ptr, o.ptr, xs.cols(), eps, xs.rows(), rmsNormThreads(xs.cols()));
    }

    /**
     * One kernel: x += delta (bf16), out = rmsNorm(x)·weight, the row read once; equal to add then rmsNorm. With
     * {@code lora} (null: none), delta's LoRA add-on kept apart: x += bf16(delta + lora), read in the same pass.
     */
    void addRmsNorm(CudaTensor xs, CudaTensor d, CudaTensor lora, CudaTensor w, float eps, CudaTensor o) {
        Shapes.requireSameShape(xs, d);
        if (lora != null) {
            Shapes.requireSameShape(d, lora);
        }
        checkRmsNorm(xs, w, o);
        if (xs.rows() == 0) {
            return;
        }
        parts.kernels().launchAddRmsNorm(xs.ptr, d.ptr, lora == null ? 0 : lora.ptr, w.ptr, o.ptr, xs.cols(), eps,
                xs.rows(), rmsNormThreads(xs.cols()));
    }

    private static void checkRmsNorm(CudaTensor xs, CudaTensor w, CudaTensor o) {
        Shapes.requireSameShape(xs, o);
        if (w.elements() != xs.cols()) {
            throw new IllegalArgumentException("rmsNorm weight " + w + " does not match rows of " + xs.cols());
        }
    }

    /** Block size of rms_norm and add_rms_norm: the same, so that both sum a row in the same order. */
    private static int rmsNormThreads(int cols) {
        return cols >= 4096 ? 512 : 256;
    }

    void add(CudaTensor a, CudaTensor b, CudaTensor o) {
        Shapes.requireSameShape(a, b);
        Shapes.requireSameShape(a, o);
        long n = a.elements();
        if (n == 0) {
            return;
        }
        parts.kernels().launchAdd(a.ptr, b.ptr, o.ptr, n);
    }

    /** {@code out = x·wᵀ (+ bias)}. */
    void matmul(CudaTensor xs, CudaTensor ws, Tensor bias, CudaTensor o) {
        if (ws.cols() != xs.cols() || o.cols() != ws.rows() || o.rows() != xs.rows()) {
            throw new IllegalArgumentException("matmul shapes do not fit: x " + xs + ", w " + ws + ", out " + o);
        }
        if (xs.rows() == 0) {
            return;
        }
        if (invariant) {
            invariantGemm(xs, ws, o);
        } else {
            parts.kernels().launchGemm(xs, ws, o); // o float32 for the logits: cuBLAS writes its fp32 accumulator
        }
        if (bias != null) {
            if (o.dtype() != DType.BF16) {
                throw new IllegalArgumentException("matmul with a bias writes bf16 outputs; got " + o);
            }
            CudaTensor bs = parts.memory().tensor(bias, "bias");
            if (bs.elements() != o.cols()) {
                throw new IllegalArgumentException("bias " + bs + " does not match " + o.cols() + " output features");
            }
            parts.kernels().launchAddBias(o.ptr, bs.ptr, o.rows(), o.cols());
        }
    }

    /** {@code o = x·wᵀ} as cuBLAS calls of {@value #INVARIANT_ROWS} rows each (see the class comment). */
    private void invariantGemm(CudaTensor xs, CudaTensor ws, CudaTensor o) {
        int in = xs.cols();
        int outF = o.cols();
        int outType = o.dtype() == DType.F32 ? Cublas.CUDA_R_32F : Cublas.CUDA_R_16BF;
        long outRowBytes = (long) outF * o.dtype().byteSize();
        long xRowBytes = in * 2L;
        reserveFor(outF, in); // a weight that did not come through loadWeight (tests): outside a capture only
        Kernels k = parts.kernels();
        for (int r0 = 0; r0 < xs.rows(); r0 += INVARIANT_ROWS) {
            int n = Math.min(INVARIANT_ROWS, xs.rows() - r0);
            long x = xs.ptr + r0 * xRowBytes;
            long out = o.ptr + r0 * outRowBytes;
            if (n == INVARIANT_ROWS) {
                k.launchGemm(x, ws, out, INVARIANT_ROWS, outType);
                continue;
            }
            k.launchCopy(scratchX.ptr, x, n * xRowBytes);
            k.launchGemm(scratchX.ptr, ws, scratchOut.ptr, INVARIANT_ROWS, outType);
            k.launchCopy(out, scratchOut.ptr, n * outRowBytes);
        }
    }

    void rope(CudaTensor xs, int[] positions, RopeTable rope, int numHeads, int headDim) {
        checkRope(xs, positions, rope, numHeads, headDim);
        if (positions.length == 0) {
            return;
        }
        long invFreq = ropeTable(rope);
        parts.kernels().launchRope(xs.ptr, xs.cols(), parts.ring().ints(positions), invFreq, numHeads, headDim,
                rope.attentionFactor(), positions.length, Math.min(1024, Math.max(32, Shapes.roundUp(numHeads * headDim / 2, 32))));
    }

    static void checkRope(CudaTensor xs, int[] positions, RopeTable rope, int numHeads, int headDim) {
        Shapes.requireRows(xs, positions.length, "x");
        if (numHeads * headDim > xs.cols() || rope.halfDim() * 2 != headDim) {
            throw new IllegalArgumentException("rope over " + numHeads + " heads of " + headDim + " with " + rope.halfDim()
                    + " frequencies does not fit rows of " + xs.cols());
        }
    }

    /** The rope table's inverse frequencies on the device, uploaded once per table. */
    long ropeTable(RopeTable rope) {
        return ropeTables.computeIfAbsent(rope, r -> {
            long dev = parts.memory().alloc(r.halfDim() * 4L);
            long off = parts.ring().reserve(r.halfDim() * 4L);
            MemorySegment.copy(r.invFreq(), 0, parts.ring().host(), JAVA_FLOAT, off, r.halfDim());
            parts.ring().toDevice(off, dev, r.halfDim() * 4L);
            return dev;
        });
    }

    /** {@code o = silu(g)·u}; with {@code lora} (null: none), gate|up's LoRA add-on kept apart, added first. */
    void swiglu(CudaTensor gu, CudaTensor lora, CudaTensor o) {
        if (gu.cols() % 2 != 0 || o.cols() != gu.cols() / 2 || o.rows() != gu.rows()) {
            throw new IllegalArgumentException("swiglu of " + gu + " into " + o);
        }
        if (lora != null) {
            Shapes.requireSameShape(gu, lora);
        }
        if (o.elements() == 0) {
            return;
        }
        parts.kernels().launchSwiglu(gu.ptr, o.ptr, o.rows(), o.cols(), lora == null ? 0 : lora.ptr);
    }

    /** Forgets the rope tables (their blocks go with the allocator's at close). */
    void clear() {
        ropeTables.clear();
    }
}
