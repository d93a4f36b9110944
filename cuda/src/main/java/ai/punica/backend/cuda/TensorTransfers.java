package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;

import ai.punica.backend.DType;
import ai.punica.model.TensorData;
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

    private final DeviceAllocator memory;
    private final StagingRing ring;
    private final Kernels kernels;

    TensorTransfers(DeviceAllocator memory, StagingRing ring, Kernels kernels) {
        this.memory = memory;
        this.ring = ring;
        this.kernels = kernels;
    }

    CudaTensor loadWeight(TensorData weight) {
        int[] shape = weight.matrixShape("loadWeight");
        Shapes.checkShape(shape[0], shape[1]);
        CudaTensor t = memory.newTensor(shape[0], shape[1]);
        uploadWeightData(weight, t.ptr);
        return t;
    }

    CudaTensor concatRows(String name, List<TensorData> parts) {
        if (parts.isEmpty()) {
            throw new IllegalArgumentException(name + ": nothing to concatenate");
        }
        boolean vectors = parts.getFirst().rank() == 1;
        long rows = 0;
        long cols = vectors ? 0 : parts.getFirst().dim(1);
        for (TensorData p : parts) {
            if (vectors ? p.rank() != 1 : p.rank() != 2 || p.dim(1) != cols) {
                throw new IllegalArgumentException(name + ": cannot stack " + p + " with " + parts.getFirst());
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
        CudaTensor t = memory.newTensor(rows, cols);
        long offset = t.ptr;
        for (TensorData p : parts) {
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
        long chunk = CHUNK_BYTES / 4;
        for (long e = 0; e < n; e += chunk) {
            int count = (int) Math.min(chunk, n - e);
            long off = ring.reserve(count * 4L);
            MemorySegment.copy(src, (int) e, ring.host(), JAVA_FLOAT, off, count);
            ring.toDevice(off, ring.device(off), count * 4L);
            kernels.launchF32ToBf16(ring.device(off), d.ptr + e * 2, count);
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
            long off = ring.reserve(count * 4L);
            kernels.launchBf16ToF32(s.ptr + e * 2, ring.device(off), count);
            ring.toHost(off, count * 4L);
            MemorySegment.copy(ring.host(), JAVA_FLOAT, off, dst, (int) e, count);
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
            long off = ring.reserve(count * elemBytes);
            MemorySegment.copy(w.data(), e * elemBytes, ring.host(), off, count * elemBytes);
            switch (type) {
                case BF16 -> ring.toDevice(off, dst + e * 2, count * 2);
                case F32 -> {
                    ring.toDevice(off, ring.device(off), count * 4);
                    kernels.launchF32ToBf16(ring.device(off), dst + e * 2, count);
                }
                case F16 -> {
                    ring.toDevice(off, ring.device(off), count * 2);
                    kernels.launchF16ToBf16(ring.device(off), dst + e * 2, count);
                }
            }
        }
    }
}
