package ai.punica.backend.cuda;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import java.util.ArrayList;
import java.util.List;

/**
 * How an adapter's weights go to their device block without staging: as few host → device copies as their
 * places allow. Weight i goes to byte {@code deviceOffsets[i]} of the block; consecutive weights whose host
 * addresses lie as far apart as their device offsets, inside one pinned block, travel in one copy (padding
 * included). An adapter read into pinned memory in the device layout ({@code LoraAdapter} with
 * {@link PinnedHostBlocks}) is one run: its whole block in one {@code cuMemcpyHtoDAsync}.
 *
 * @param runs the copies, in device order
 */
record UploadPlan(List<Run> runs) {

    /** One copy: {@code bytes} from host address {@code host} to byte {@code deviceOffset} of the block. */
    record Run(long host, long deviceOffset, long bytes) {
    }

    /** Which host ranges the copy engine may read directly (page-locked memory). */
    interface PinnedRanges {
        boolean contains(long address, long bytes);
    }

    UploadPlan {
        runs = List.copyOf(runs);
    }

    /**
     * The direct copies for {@code weights}, or null when any of them must be staged: stored in another dtype than
     * the device's bf16 (the staging path converts), or not wholly inside pinned memory.
     */
    static UploadPlan direct(List<TensorData> weights, long[] deviceOffsets, PinnedRanges pinned) {
        if (weights.isEmpty()) {
            return null;
        }
        List<Run> runs = new ArrayList<>();
        long runHost = 0;
        long runDevice = 0;
        long runBytes = 0;
        for (int i = 0; i < weights.size(); i++) {
            TensorData w = weights.get(i);
            long bytes = w.elementCount() * DType.BF16.byteSize();
            long host = w.data().address();
            if (w.dtype() != DType.BF16 || !w.data().isNative() || w.data().byteSize() < bytes
                    || !pinned.contains(host, bytes)) {
                return null;
            }
            boolean joins = runBytes > 0 && host - runHost == deviceOffsets[i] - runDevice && host >= runHost
                    && pinned.contains(runHost, host + bytes - runHost);
            if (joins) {
                runBytes = host + bytes - runHost;
            } else {
                if (runBytes > 0) {
                    runs.add(new Run(runHost, runDevice, runBytes));
                }
                runHost = host;
                runDevice = deviceOffsets[i];
                runBytes = bytes;
            }
        }
        runs.add(new Run(runHost, runDevice, runBytes));
        return new UploadPlan(runs);
    }

    long bytes() {
        return runs.stream().mapToLong(Run::bytes).sum();
    }
}
