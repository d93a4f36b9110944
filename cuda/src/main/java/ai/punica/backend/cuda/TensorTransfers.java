package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * Tensors between host and device on the compute stream, in chunks of a quarter of the staging ring:
 *
 * <pre>
 *  float[] ─► ring ─(H→D)─► f32_to_bf16 ─► tensor            tensor ─► bf16_to_f32 ─► ring ─(D→H, wait)─► float[]
 *  weights: bf16 ─► ring ─(H→D)─► tensor;  f32 / f16 ─► ring ─(H→D)─► f32_to_bf16 / f16_to_bf16 ─► tensor
 * </pre>
 */
final class TensorTransfers {
    private static final long CHUNK_BYTES = StagingRing.RING_BYTES / 4;

    private final DeviceParts parts;

    TensorTransfers(DeviceParts parts) {
        this.parts = parts;
    }

    CudaTensor loadWeight(TensorData weight) {
        int[] shape = weight.matrixShape("loadWeight");
        Shapes.checkShape(shape[0], shape[1]);
        CudaTensor t = parts.memory().newTensor(shape[0], shape[1]);
        uploadWeightData(weight, t.ptr);
        return t;
    }

    CudaTensor concatRows(String name, List<TensorData> pieces) {
        if (pieces.isEmpty()) {
            throw new IllegalArgumentException(name + ": nothing to concatenate");
        }
        boolean vectors = pieces.getFirst().rank() == 1;
        long rows = 0;
        long cols = vectors ? 0 : pieces.getFirst().dim(1);
        for (TensorData p : pieces) {
            if (vectors ? p.rank() != 1 : p.rank() != 2 || p.dim(1) != cols) {
                throw new IllegalArgumentException(name + ": cannot stack " + p + " with " + pieces.getFirst());
            }
            if (vectors) {
                cols += p.dim(0);
            } else {
                rows += p.dim(0);
            }
        }
        if (vectors) {
            rows = 1;
        }
        Shapes.checkShape(Math.toIntExact(rows), Math.toIntExact(cols));
        CudaTensor t = parts.memory().newTensor(rows, cols);
        long offset = t.ptr;
        for (TensorData p : pieces) {
            uploadWeightData(p, offset);
            offset += p.elementCount() * 2;
        }
        return t;
    }

    void upload(float[] src, CudaTensor d) {
        long n = d.elements();
        if (src.length < n) {
            throw new IllegalArgumentException("upload of " + src.length + " floats into " + d);
        }
        boolean f32 = d.dtype() == DType.F32;
        long chunk = CHUNK_BYTES / 4;
        for (long e = 0; e < n; e += chunk) {
            int count = (int) Math.min(chunk, n - e);
            long off = parts.ring().reserve(count * 4L);
            MemorySegment.copy(src, (int) e, parts.ring().host(), JAVA_FLOAT, off, count);
            if (f32) {
                parts.ring().toDevice(off, d.ptr + e * 4, count * 4L);
            } else {
                parts.ring().toDevice(off, parts.ring().device(off), count * 4L);
                parts.kernels().launchF32ToBf16(parts.ring().device(off), d.ptr + e * 2, count);
            }
        }
    }

    void download(CudaTensor s, float[] dst) {
        long n = s.elements();
        if (dst.length < n) {
            throw new IllegalArgumentException("download of " + s + " into " + dst.length + " floats");
        }
        long chunk = CHUNK_BYTES / 4;
        for (long e = 0; e < n; e += chunk) {
            int count = (int) Math.min(chunk, n - e);
            long off = parts.ring().reserve(count * 4L);
            if (s.dtype() == DType.F32) {
                parts.ctx().driver.copyDtoDAsync(parts.ring().device(off), s.ptr + e * 4, count * 4L,
                        parts.ctx().stream);
            } else {
                parts.kernels().launchBf16ToF32(s.ptr + e * 2, parts.ring().device(off), count);
            }
            parts.ring().toHost(off, count * 4L);
            MemorySegment.copy(parts.ring().host(), JAVA_FLOAT, off, dst, (int) e, count);
        }
    }

    /** A weight's data, converted to bf16 on the device where it is not, at {@code dst}. */
    private void uploadWeightData(TensorData w, long dst) {
        DType type = w.dtype();
        long n = w.elementCount();
        long elemBytes = type.byteSize();
        if (w.data().byteSize() < n * elemBytes) {
            throw new IllegalArgumentException(w + " holds " + w.data().byteSize() + " bytes, fewer than its shape needs");
        }
        long chunk = CHUNK_BYTES / elemBytes;
        for (long e = 0; e < n; e += chunk) {
            long count = Math.min(chunk, n - e);
            long off = parts.ring().reserve(count * elemBytes);
            MemorySegment.copy(w.data(), e * elemBytes, parts.ring().host(), off, count * elemBytes);
            switch (type) {
                case BF16 -> parts.ring().toDevice(off, dst + e * 2, count * 2);
                case F32 -> {
                    parts.ring().toDevice(off, parts.ring().device(off), count * 4);
                    parts.kernels().launchF32ToBf16(parts.ring().device(off), dst + e * 2, count);
                }
                case F16 -> {
                    parts.ring().toDevice(off, parts.ring().device(off), count * 2);
                    parts.kernels().launchF16ToBf16(parts.ring().device(off), dst + e * 2, count);
                }
            }
        }
    }
}
