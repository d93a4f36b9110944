package ai.punica.backend.cuda;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Freed memory blocks kept for reuse, one list per size, and the bytes they hold: {@link DeviceAllocator}'s
 * device blocks (addresses) and {@link PinnedHostBlocks}' page-locked host blocks. The block of a size freed
 * last is taken first. Not thread-safe: the owner locks where it needs to.
 *
 * @param <B> a block's handle
 */
final class FreeBlocks<B> {
    private final Map<Long, ArrayDeque<B>> bySize = new HashMap<>();
    private long bytes;
    private long reused;

    /** A kept block of exactly {@code size} bytes (counted as reused), or null when there is none. */
    B take(long size) {
        ArrayDeque<B> blocks = bySize.get(size);
        B block = blocks == null ? null : blocks.poll();
        if (block != null) {
            bytes -= size;
            reused++;
        }
        return block;
    }

    /** Keeps {@code block} of {@code size} bytes for a later {@link #take} of that size. */
    void put(long size, B block) {
        bySize.computeIfAbsent(size, k -> new ArrayDeque<>()).push(block);
        bytes += size;
    }

    /** Hands every kept block to {@code free} and forgets them. */
    void drain(Consumer<B> free) {
        for (ArrayDeque<B> blocks : bySize.values()) {
            blocks.forEach(free);
        }
        bySize.clear();
        bytes = 0;
    }

    /** Bytes of the blocks kept now. */
    long bytes() {
        return bytes;
    }

    /** Blocks taken again so far. */
    long reused() {
        return reused;
    }
}
