package ai.punica.backend.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Locale;

/**
 * The host → device link's own bound for an adapter upload (issue 13's target: ≤ 2 ms for an 80 MB rank-16
 * all-projection adapter of a 7B model): one {@code cuMemcpyHtoDAsync} of the same bytes from page-locked memory
 * ({@code cuMemAllocHost}, as {@link PinnedHostBlocks} allocates), from ordinary (pageable) memory, and from
 * page-locked memory as two halves on two streams, and from page-locked and write-combined memory that the CPU has just
 * written (as the loader writes an adapter's block before its upload), each timed by events on its own, 20 times after
 * a warm-up. The
 * adapter path ({@code AdapterLoadBench}, {@code tools/bench/adapters_gpu.sh}) measured 2.13 ms at p50 in session
 * 5; this run says how much of that the link itself takes, in the same call.
 * Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.HostCopyBench [bytes]}.
 */
public final class HostCopyBench {
    private static final int REPS = 20;

    private HostCopyBench() {
    }

    public static void main(String[] args) {
        long bytes = args.length > 0 ? Long.parseLong(args[0]) : 80L * 1000 * 1000;
        try (CudaBackend gpu = new CudaBackend(); Arena arena = Arena.ofConfined()) {
            System.out.println("device " + gpu.deviceDescription() + ", " + bytes + " bytes per copy");
            CudaContext ctx = gpu.context();
            ctx.enter();
            Driver d = ctx.driver;
            long device = d.memAlloc(bytes);
            MemorySegment pinned = d.memAllocHost(bytes);
            MemorySegment pageable = arena.allocate(bytes, 4096);
            MemorySegment side = d.streamCreate(1); // CU_STREAM_NON_BLOCKING
            try {
                pinned.fill((byte) 1);
                pageable.fill((byte) 1);
                report("page-locked (cuMemAllocHost), one copy", bytes,
                        times(gpu, () -> d.copyHtoDAsync(device, pinned, bytes, ctx.stream)));
                // What an adapter load does: the CPU writes the block (disk -> host), then the copy engine reads it.
                report("page-locked, written by the CPU before each copy", bytes,
                        times(gpu, () -> pinned.fill((byte) 2), () -> d.copyHtoDAsync(device, pinned, bytes, ctx.stream)));
                // Wall clock from the enqueue to a queried event, as the engine sees an upload end (device time above).
                long[] wall = new long[REPS];
                for (int i = -1; i < REPS; i++) {
                    MemorySegment done = d.eventCreate(Driver.CU_EVENT_DISABLE_TIMING);
                    long start = System.nanoTime();
                    d.copyHtoDAsync(device, pinned, bytes, ctx.stream);
                    d.eventRecord(done, ctx.stream);
                    while (!d.eventQuery(done)) {
                        Thread.onSpinWait();
                    }
                    if (i >= 0) {
                        wall[i] = System.nanoTime() - start;
                    }
                    d.eventDestroy(done);
                }
                float[] wallMs = new float[REPS];
                for (int i = 0; i < REPS; i++) {
                    wallMs[i] = wall[i] / 1e6f;
                }
                Arrays.sort(wallMs);
                report("page-locked, one copy, wall clock from enqueue to the event queried done", bytes, wallMs);
                // A different block each copy (as adapters are: one page-locked block each), 12 in rotation.
                MemorySegment[] blocks = new MemorySegment[12];
                try {
                    for (int b = 0; b < blocks.length; b++) {
                        blocks[b] = d.memAllocHost(bytes);
                        blocks[b].fill((byte) b);
                    }
                    int[] next = {0};
                    report("page-locked, another of 12 blocks each copy", bytes, times(gpu,
                            () -> d.copyHtoDAsync(device, blocks[next[0]++ % blocks.length], bytes, ctx.stream)));
                } finally {
                    for (MemorySegment b : blocks) {
                        if (b != null) {
                            d.memFreeHost(b);
                        }
                    }
                }
                MemorySegment combined = d.memHostAllocWriteCombined(bytes);
                try {
                    report("write-combined (cuMemHostAlloc WRITECOMBINED), written by the CPU before each copy", bytes,
                            times(gpu, () -> combined.fill((byte) 3),
                                    () -> d.copyHtoDAsync(device, combined, bytes, ctx.stream)));
                } finally {
                    d.memFreeHost(combined);
                }
                report("pageable memory, one copy", bytes,
                        times(gpu, () -> d.copyHtoDAsync(device, pageable, bytes, ctx.stream)));
                long half = bytes / 2;
                report("page-locked, two halves on two streams", bytes, times(gpu, () -> {
                    MemorySegment forked = d.eventCreate();
                    MemorySegment joined = d.eventCreate();
                    try {
                        d.eventRecord(forked, ctx.stream);
                        d.streamWaitEvent(side, forked);
                        d.copyHtoDAsync(device, pinned, half, ctx.stream);
                        d.copyHtoDAsync(device + half, pinned.asSlice(half), bytes - half, side);
                        d.eventRecord(joined, side);
                        d.streamWaitEvent(ctx.stream, joined);
                    } finally {
                        d.eventDestroy(forked);
                        d.eventDestroy(joined);
                    }
                }));
            } finally {
                d.streamSynchronize(ctx.stream);
                d.streamSynchronize(side);
                d.streamDestroy(side);
                d.memFreeHost(pinned);
                d.memFree(device);
            }
        }
    }

    /** Device time of {@code copy}, one warm-up then {@value #REPS} timed one by one, sorted. */
    private static float[] times(CudaBackend gpu, Runnable copy) {
        return times(gpu, () -> { }, copy);
    }

    /** The same, with {@code before} run (untimed, on the CPU, after the previous copy ended) before each copy. */
    private static float[] times(CudaBackend gpu, Runnable before, Runnable copy) {
        before.run();
        gpu.timeMillis(copy);
        float[] ms = new float[REPS];
        for (int i = 0; i < REPS; i++) {
            before.run();
            ms[i] = gpu.timeMillis(copy);
        }
        Arrays.sort(ms);
        return ms;
    }

    private static void report(String what, long bytes, float[] sorted) {
        float p50 = sorted[sorted.length / 2];
        float p90 = sorted[(int) Math.ceil(sorted.length * 0.9) - 1];
        System.out.printf(Locale.ROOT, "BENCH host to device %s: p50 %.3f ms (%.1f GB/s), p90 %.3f ms, min %.3f ms%n",
                what, p50, bytes / (p50 * 1e6), p90, sorted[0]);
    }
}
