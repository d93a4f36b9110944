package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The BPE model of tokenizer.json: a word is split into characters (or their byte-fallback
 * tokens), then adjacent pairs are merged lowest rank first, leftmost on ties, as HF's
 * {@code Word::merge_all} does with a priority queue over a linked list of symbols.
 */
final class BpeModel {
    /** HF's cache size; words longer than this many chars are not cached. */
    private static final int CACHE_CAPACITY = 10_000;
    private static final int CACHE_MAX_WORD = 256;

    private final Map<String, Integer> vocab;
    private final String[] idToToken;
    private final MergeTable merges;
    private final int unkId;
    private final boolean fuseUnk;
    private final boolean byteFallback;
    private final boolean ignoreMerges;
    private final String continuingSubwordPrefix;
    private final String endOfWordSuffix;
    private final int[] byteTokenIds = new int[256];
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    private BpeModel(Map<String, Integer> vocab, MergeTable merges, int unkId, boolean fuseUnk, boolean byteFallback,
            boolean ignoreMerges, String continuingSubwordPrefix, String endOfWordSuffix) {
        this.vocab = vocab;
        this.merges = merges;
        this.unkId = unkId;
        this.fuseUnk = fuseUnk;
        this.byteFallback = byteFallback;
        this.ignoreMerges = ignoreMerges;
        this.continuingSubwordPrefix = continuingSubwordPrefix;
        this.endOfWordSuffix = endOfWordSuffix;
        int maxId = vocab.values().stream().mapToInt(Integer::intValue).max().orElse(-1);
        idToToken = new String[maxId + 1];
        vocab.forEach((token, id) -> idToToken[id] = token);
        for (int b = 0; b < 256; b++) {
            byteTokenIds[b] = vocab.getOrDefault(String.format("<0x%02X>", b), -1);
        }
    }

    /**
     * The vocabulary and merges read while streaming tokenizer.json (see {@link TokenizerJsonReader}),
     * so that a 262k-token file never exists as a JSON tree: {@code mergePairs} holds the left and right
     * token id of each merge, in rank order, or is null when the merges are in the tree.
     */
    record Tables(Map<String, Integer> vocab, IntList mergePairs) {
    }

    static BpeModel parse(JsonField json) {
        return parse(json, null);
    }

    /** {@code json} is the "model" object; with {@code tables}, its vocab and merges are taken from there. */
    static BpeModel parse(JsonField json, Tables tables) {
        String type = json.get("type").text("BPE");
        if (!type.equals("BPE")) {
            throw json.unsupported("model", "BPE");
        }
        String prefix = json.get("continuing_subword_prefix").text("");
        Map<String, Integer> vocab;
        MergeTable merges;
        if (tables != null && tables.mergePairs() != null) {
            vocab = tables.vocab();
            String[] tokens = new String[vocab.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1];
            vocab.forEach((token, id) -> tokens[id] = token);
            IntList pairs = tables.mergePairs();
            merges = new MergeTable(pairs.size() / 2);
            for (int rank = 0; rank < pairs.size() / 2; rank++) {
                String left = tokens[pairs.get(2 * rank)];
                String right = tokens[pairs.get(2 * rank + 1)];
                addMerge(merges, vocab, left, right, prefix, rank, json.get("merges").at(rank));
            }
        } else {
            if (tables != null) {
                vocab = tables.vocab();
            } else {
                JsonField vocabJson = json.get("vocab");
                vocab = new HashMap<>(vocabJson.isAbsent() ? 16 : vocabJson.node().size() * 2);
                for (Map.Entry<String, JsonField> e : vocabJson.members()) {
                    vocab.put(e.getKey(), e.getValue().intValue());
                }
            }
            JsonField mergesJson = json.get("merges");
            var mergeList = mergesJson.isAbsent() ? java.util.List.<JsonField>of() : mergesJson.elements();
            merges = new MergeTable(mergeList.size());
            for (int rank = 0; rank < mergeList.size(); rank++) {
                String[] pair = mergePair(mergeList.get(rank));
                addMerge(merges, vocab, pair[0], pair[1], prefix, rank, mergeList.get(rank));
            }
        }
        int unkId = -1;
        if (json.has("unk_token")) {
            String unk = json.get("unk_token").text();
            Integer id = vocab.get(unk);
            if (id == null) {
                throw json.get("unk_token").error("unk_token \"" + unk + "\" is not in model.vocab");
            }
            unkId = id;
        }
        return new BpeModel(vocab, merges, unkId, json.get("fuse_unk").bool(false), json.get("byte_fallback").bool(false),
                json.get("ignore_merges").bool(false), json.get("continuing_subword_prefix").text(null),
                json.get("end_of_word_suffix").text(null));
    }

    /** A merge of tokenizer.json: "left right" or [left, right]. */
    static String[] mergePair(JsonField m) {
        if (m.node().isTextual()) {
            // "a b": the separator is the first space; tokens never contain a plain space in
            // these vocabularies (byte-level uses "Ġ", SentencePiece "▁").
            String s = m.node().asText();
            int space = s.indexOf(' ');
            if (space < 0) {
                throw m.error("expected a merge \"left right\", found \"" + s + "\"");
            }
            return new String[] {s.substring(0, space), s.substring(space + 1)};
        }
        if (m.node().isArray() && m.node().size() == 2) {
            return new String[] {m.at(0).text(), m.at(1).text()};
        }
        throw m.error("expected a merge as \"left right\" or [left, right]");
    }

    private static void addMerge(MergeTable merges, Map<String, Integer> vocab, String left, String right,
            String prefix, int rank, JsonField where) {
        Integer leftId = left == null ? null : vocab.get(left);
        Integer rightId = right == null ? null : vocab.get(right);
        String mergedToken = leftId == null || rightId == null ? null
                : left + (right.startsWith(prefix) ? right.substring(prefix.length()) : right);
        Integer mergedId = mergedToken == null ? null : vocab.get(mergedToken);
        if (leftId == null || rightId == null || mergedId == null) {
            String missing = leftId == null ? left : rightId == null ? right : mergedToken;
            throw where.error("merge uses \"" + missing + "\", which is not in model.vocab");
        }
        merges.putIfAbsent(leftId, rightId, rank, mergedId);
    }

    Map<String, Integer> vocab() {
        return vocab;
    }

    String idToToken(int id) {
        return id >= 0 && id < idToToken.length ? idToToken[id] : null;
    }

    /** Appends the ids of one pre-tokenized word to {@code out}. */
    void tokenize(String word, IntList out) {
        if (word.isEmpty()) {
            return;
        }
        if (ignoreMerges) {
            // Llama-3: a word that is itself a vocabulary entry is taken whole, merges or not.
            Integer id = vocab.get(word);
            if (id != null) {
                out.add(id);
                return;
            }
        }
        int[] cached = cache.get(word);
        if (cached == null) {
            cached = mergeWord(word);
            if (word.length() <= CACHE_MAX_WORD && cache.size() < CACHE_CAPACITY) {
                cache.put(word, cached);
            }
        }
        out.addAll(cached);
    }

    private int[] mergeWord(String word) {
        IntList symbols = new IntList(word.length());
        int pendingUnk = -1;
        for (int i = 0; i < word.length(); ) {
            int cp = word.codePointAt(i);
            int next = i + Character.charCount(cp);
            String s = word.substring(i, next);
            if (i > 0 && continuingSubwordPrefix != null) {
                s = continuingSubwordPrefix + s;
            }
            if (next == word.length() && endOfWordSuffix != null) {
                s = s + endOfWordSuffix;
            }
            i = next;
            Integer id = vocab.get(s);
            if (id != null) {
                if (pendingUnk >= 0) {
                    symbols.add(pendingUnk);
                    pendingUnk = -1;
                }
                symbols.add(id);
                continue;
            }
            if (byteFallback && appendByteTokens(s, symbols)) {
                continue;
            }
            if (unkId < 0) {
                throw new IllegalArgumentException("character \"" + s + "\" (U+" + Integer.toHexString(cp).toUpperCase()
                        + ") is not in the vocabulary and the tokenizer has no unk_token");
            }
            if (pendingUnk >= 0 && !fuseUnk) {
                symbols.add(pendingUnk);
            }
            pendingUnk = unkId;
        }
        if (pendingUnk >= 0) {
            symbols.add(pendingUnk);
        }
        return mergeAll(symbols.toArray());
    }

    private boolean appendByteTokens(String s, IntList symbols) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        for (byte b : bytes) {
            if (byteTokenIds[b & 0xFF] < 0) {
                return false;
            }
        }
        for (byte b : bytes) {
            symbols.add(byteTokenIds[b & 0xFF]);
        }
        return true;
    }

    /** Merges pairs by rank; queue entries are (rank << 32 | position), stale ones are skipped. */
    private int[] mergeAll(int[] ids) {
        int n = ids.length;
        if (n < 2) {
            return ids;
        }
        int[] prev = new int[n];
        int[] next = new int[n];
        boolean[] removed = new boolean[n];
        LongHeap queue = new LongHeap(n);
        for (int i = 0; i < n; i++) {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
            if (i + 1 < n) {
                long m = merges.get(ids[i], ids[i + 1]);
                if (m >= 0) {
                    queue.push((m & 0xFFFFFFFF00000000L) | i);
                }
            }
        }
        int remaining = n;
        while (!queue.isEmpty()) {
            long top = queue.pop();
            int pos = (int) top;
            int rank = (int) (top >>> 32);
            if (removed[pos] || next[pos] < 0) {
                continue;
            }
            int right = next[pos];
            long m = merges.get(ids[pos], ids[right]);
            if (m < 0 || (int) (m >>> 32) != rank) {
                continue;
            }
            ids[pos] = (int) m;
            removed[right] = true;
            remaining--;
            next[pos] = next[right];
            if (next[right] >= 0) {
                prev[next[right]] = pos;
            }
            if (prev[pos] >= 0) {
                long left = merges.get(ids[prev[pos]], ids[pos]);
                if (left >= 0) {
                    queue.push((left & 0xFFFFFFFF00000000L) | prev[pos]);
                }
            }
            if (next[pos] >= 0) {
                long after = merges.get(ids[pos], ids[next[pos]]);
                if (after >= 0) {
                    queue.push((after & 0xFFFFFFFF00000000L) | pos);
                }
            }
        }
        int[] out = new int[remaining];
        int k = 0;
        for (int i = 0; i >= 0; i = next[i]) {
            out[k++] = ids[i];
        }
        return out;
    }

    /** A binary min-heap of longs. */
    private static final class LongHeap {
        private long[] heap;
        private int size;

        LongHeap(int capacity) {
            heap = new long[Math.max(4, capacity)];
        }

        boolean isEmpty() {
            return size == 0;
        }

        void push(long v) {
            if (size == heap.length) {
                heap = java.util.Arrays.copyOf(heap, size * 2);
            }
            int i = size++;
            while (i > 0) {
                int parent = (i - 1) >>> 1;
                if (heap[parent] <= v) {
                    break;
                }
                heap[i] = heap[parent];
                i = parent;
            }
            heap[i] = v;
        }

        long pop() {
            long top = heap[0];
            long last = heap[--size];
            int i = 0;
            while (true) {
                int child = 2 * i + 1;
                if (child >= size) {
                    break;
                }
                if (child + 1 < size && heap[child + 1] < heap[child]) {
                    child++;
                }
                if (heap[child] >= last) {
                    break;
                }
                heap[i] = heap[child];
                i = child;
            }
            heap[i] = last;
            return top;
        }
    }
}
