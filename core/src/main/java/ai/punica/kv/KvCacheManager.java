package ai.punica.kv;

import java.util.Arrays;

/**
 * Owns the page pool of one engine's paged KV cache. Each sequence owns an ordered list of pages
 * ({@link SequencePages}); pages go back to the pool when the sequence finishes, is cancelled or is
 * preempted. No fragmentation: any free page serves any sequence (Punica §5, "separable" KV cache).
 * Only the engine thread calls this class.
 */
public final class KvCacheManager {
    private final int numPages;
    private final int pageSize;
    private final int[] freeStack;
    private int freeCount;

    public KvCacheManager(int numPages, int pageSize) {
        if (numPages < 1 || pageSize < 1) {
            throw new IllegalArgumentException("KV cache needs at least one page of at least one token, got "
                    + numPages + " pages of " + pageSize);
        }
        this.numPages = numPages;
        this.pageSize = pageSize;
        this.freeStack = new int[numPages];
        // Lowest page ids on top, so a fresh pool hands out 0, 1, 2, ...
        for (int i = 0; i < numPages; i++) {
            freeStack[i] = numPages - 1 - i;
        }
        this.freeCount = numPages;
    }

    /**
     * Number of pages that fit a memory budget: each page holds pageSize tokens of keys and values for
     * every layer, {@code 2 · layers · kvHeads · headDim · bytesPerElement} bytes per token.
     */
    public static int pagesForBudget(long budgetBytes, int pageSize, int numLayers, int numKvHeads, int headDim,
                                     int bytesPerElement) {
        long bytesPerPage = 2L * numLayers * numKvHeads * headDim * bytesPerElement * pageSize;
        long pages = budgetBytes / bytesPerPage;
        if (pages < 1) {
            throw new IllegalArgumentException("KV cache budget of " + budgetBytes + " bytes holds no page of "
                    + bytesPerPage + " bytes; raise the budget");
        }
        return (int) Math.min(pages, Integer.MAX_VALUE);
    }

    public int numPages() {
        return numPages;
    }

    public int pageSize() {
        return pageSize;
    }

    public int freePages() {
        return freeCount;
    }

    public int usedPages() {
        return numPages - freeCount;
    }

    /** Fraction of pages in use, 0..1 (vllm:kv_cache_usage_perc). */
    public double usage() {
        return (double) usedPages() / numPages;
    }

    /** Pages a sequence of {@code tokens} tokens needs. */
    public int pagesFor(int tokens) {
        return (tokens + pageSize - 1) / pageSize;
    }

    /** Extra pages {@code seq} needs to hold {@code tokens} tokens in all. */
    public int additionalPagesFor(SequencePages seq, int tokens) {
        return Math.max(0, pagesFor(tokens) - seq.pageCount());
    }

    public boolean canGrow(SequencePages seq, int tokens) {
        return additionalPagesFor(seq, tokens) <= freeCount;
    }

    /**
     * Grows {@code seq} so that it can hold {@code tokens} tokens. Returns false, changing nothing, when
     * the pool lacks the pages.
     */
    public boolean grow(SequencePages seq, int tokens) {
        int needed = additionalPagesFor(seq, tokens);
        if (needed > freeCount) {
            return false;
        }
        for (int i = 0; i < needed; i++) {
            seq.add(freeStack[--freeCount]);
        }
        return true;
    }

    /** Returns all of {@code seq}'s pages to the pool; the sequence is empty afterwards. */
    public void release(SequencePages seq) {
        int[] pages = seq.clear();
        for (int page : pages) {
            freeStack[freeCount++] = page;
        }
    }

    /** Pages of one sequence, in token order. */
    public static final class SequencePages {
        private int[] pages = new int[4];
        private int count;

        public int pageCount() {
            return count;
        }

        public int page(int i) {
            return pages[i];
        }

        /** Copies the page ids into {@code dst} at {@code offset}; returns the number copied. */
        public int copyTo(int[] dst, int offset) {
            System.arraycopy(pages, 0, dst, offset, count);
            return count;
        }

        void add(int page) {
            if (count == pages.length) {
                pages = Arrays.copyOf(pages, count * 2);
            }
            pages[count++] = page;
        }

        int[] clear() {
            int[] out = Arrays.copyOf(pages, count);
            count = 0;
            return out;
        }
    }
}
