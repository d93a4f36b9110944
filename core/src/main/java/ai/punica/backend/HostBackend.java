package ai.punica.backend;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;

/**
 * What the backends that compute in host memory (CPU, reference) share: the argument checks. Each operation
 * here takes the tensors it is handed as this backend's own ({@link #own}: made by it, not freed), as
 * activations where it writes them ({@link #activation}), checks the shapes ({@link ShapeChecks}), and hands
 * the typed tensors to the subclass's operation of the same name, which only computes (and checks what is
 * particular to it, such as storage that must not overlap).
 *
 * <pre>
 *   rmsNorm(Tensor x, …) ─► own / activation / ShapeChecks ─► rmsNorm(T x, …)   (CpuBackend, ReferenceBackend)
 *   sgmvShrink / sgmvExpand ─► the segments with an adapter, checked, as {@link LoraSegment}s
 * </pre>
 *
 * @param <T> the backend's tensor
 * @param <K> the backend's KV storage
 */
public abstract class HostBackend<T extends RowMajorTensor<?>, K extends KvStorage> implements Backend {

    /** The adapter segments of the current SGMV call (one thread drives a backend: reused, not reallocated). */
    private final List<LoraSegment<T>> loraSegments = new ArrayList<>();

    /**
     * Rows {@code [from, to)} of an SGMV call that use one adapter slot: its A (shrink) or B (expand) as this
     * backend's tensor, its rank and scale.
     */
    protected record LoraSegment<T>(int from, int to, T weight, int rank, float scale) {
    }

    // ---- memory ---------------------------------------------------------------------------------

    @Override
    public final void upload(float[] src, Tensor dst) {
        T d = activation("upload", "dst", dst);
        ShapeChecks.requireFloats("upload", "dst", dst, src.length);
        upload(src, d);
    }

    /** Copies the first {@code rows · cols} floats of src into dst. */
    protected abstract void upload(float[] src, T dst);

    @Override
    public final void download(Tensor src, float[] dst) {
        T s = own("download", "src", src);
        ShapeChecks.requireFloats("download", "src", src, dst.length);
        download(s, dst);
    }

    /** Copies src, as floats, into the first {@code rows · cols} elements of dst. */
    protected abstract void download(T src, float[] dst);

    @Override
    public final void free(Tensor tensor) {
        T t = own("free", "tensor", tensor);
        if (t.isView()) {
            throw ShapeChecks.fail("free", tensor + " is a view (firstRows); free the tensor it came from");
        }
        t.markFreed();
        released(t);
    }

    /** After {@link #free} marked the tensor's storage freed: release the memory behind it (none by default). */
    protected void released(T tensor) {
    }

    // ---- dense operations -----------------------------------------------------------------------

    @Override
    public final void embedding(Tensor table, int[] tokenIds, Tensor out) {
        T t = own("embedding", "table", table);
        T o = activation("embedding", "out", out);
        ShapeChecks.checkEmbedding(table, tokenIds, out);
        embedding(t, tokenIds, o);
    }

    protected abstract void embedding(T table, int[] tokenIds, T out);

    @Override
    public final void rmsNorm(Tensor x, Tensor weight, float eps, Tensor out) {
        T xs = activation("rmsNorm", "x", x);
        T w = own("rmsNorm", "weight", weight);
        T o = activation("rmsNorm", "out", out);
        ShapeChecks.checkRmsNorm("rmsNorm", x, weight, out);
        rmsNorm(xs, w, eps, o);
    }

    protected abstract void rmsNorm(T x, T weight, float eps, T out);

    @Override
    public final void add(Tensor a, Tensor b, Tensor out) {
        T as = activation("add", "a", a);
        T bs = activation("add", "b", b);
        T os = activation("add", "out", out);
        ShapeChecks.checkAdd("add", "b", a, b, out);
        add(as, bs, os);
    }

    protected abstract void add(T a, T b, T out);

    @Override
    public final void zero(Tensor t) {
        T d = activation("zero", "t", t);
        upload(new float[Math.multiplyExact(d.rows(), d.cols())], d);
    }

    @Override
    public final void matmul(Tensor x, Tensor w, Tensor bias, Tensor out) {
        T xs = activation("matmul", "x", x);
        T ws = own("matmul", "w", w);
        T bs = bias == null ? null : own("matmul", "bias", bias);
        T os = activation("matmul", "out", out);
        ShapeChecks.checkMatmul(x, w, bias, out);
        if (os.sharesStorage(xs)) {
            throw ShapeChecks.fail("matmul", "out " + out + " must not share storage with x " + x);
        }
        matmul(xs, ws, bs, os);
    }

    /** As {@link #matmul(Tensor, Tensor, Tensor, Tensor)}; bias may be null. */
    protected abstract void matmul(T x, T w, T bias, T out);

    @Override
    public final void rope(Tensor x, int[] positions, RopeTable rope, int numHeads, int headDim) {
        T xs = activation("rope", "x", x);
        ShapeChecks.checkRope(x, positions, rope, numHeads, headDim);
        rope(xs, positions, rope, numHeads, headDim);
    }

    protected abstract void rope(T x, int[] positions, RopeTable rope, int numHeads, int headDim);

    @Override
    public final void swiglu(Tensor gateUp, Tensor out) {
        T gu = activation("swiglu", "gateUp", gateUp);
        T o = activation("swiglu", "out", out);
        ShapeChecks.checkSwiglu(gateUp, out);
        swiglu(gu, o);
    }

    protected abstract void swiglu(T gateUp, T out);

    @Override
    public final void gatherRows(Tensor x, int[] rows, Tensor out) {
        T xs = activation("gatherRows", "x", x);
        T o = activation("gatherRows", "out", out);
        ShapeChecks.checkGatherRows(x, rows, out);
        if (o.sharesStorage(xs)) {
            throw ShapeChecks.fail("gatherRows", "out " + out + " must not share storage with x " + x);
        }
        gatherRows(xs, rows, o);
    }

    protected abstract void gatherRows(T x, int[] rows, T out);

    // ---- paged KV cache and attention -----------------------------------------------------------

    @Override
    public final void appendKv(KvStorage kv, int layer, Tensor qkv, int kCol, int vCol, int[] slotMapping) {
        K cache = kv("appendKv", kv);
        T q = activation("appendKv", "qkv", qkv);
        ShapeChecks.checkAppendKv(kv, layer, qkv, kCol, vCol, slotMapping);
        appendKv(cache, layer, q, kCol, vCol, slotMapping);
    }

    protected abstract void appendKv(K kv, int layer, T qkv, int kCol, int vCol, int[] slotMapping);

    @Override
    public final void attention(Tensor qkv, KvStorage kv, int layer, AttentionBatch batch, AttentionShape shape,
                                Tensor out) {
        K cache = kv("attention", kv);
        T q = activation("attention", "qkv", qkv);
        T o = activation("attention", "out", out);
        ShapeChecks.checkAttention(qkv, kv, layer, batch, shape, out);
        attention(q, cache, layer, batch, shape, o);
    }

    protected abstract void attention(T qkv, K kv, int layer, AttentionBatch batch, AttentionShape shape, T out);

    // ---- segmented LoRA (SGMV) ------------------------------------------------------------------

    @Override
    public final void sgmvShrink(Tensor x, LoraWeights weights, Segments segments, Tensor v, int vCol) {
        T xs = activation("sgmvShrink", "x", x);
        T vs = activation("sgmvShrink", "v", v);
        ShapeChecks.checkSegments("sgmvShrink", segments, weights, Math.min(x.rows(), v.rows()));
        List<LoraSegment<T>> adapted = adapted("sgmvShrink", segments, weights, "lora A", slot -> {
            ShapeChecks.checkLoraA("sgmvShrink", weights, slot, x.cols());
            ShapeChecks.checkRankColumns("sgmvShrink", v, vCol, weights.rank()[slot], slot);
            return weights.a()[slot];
        });
        sgmvShrink(xs, adapted, vs, vCol);
    }

    /** {@code v[r, vCol : vCol + rank] = x[r] · Aᵀ} for the rows of each segment, A its {@code weight}. */
    protected abstract void sgmvShrink(T x, List<LoraSegment<T>> segments, T v, int vCol);

    @Override
    public final void sgmvExpand(Tensor v, int vCol, LoraWeights weights, Segments segments, Tensor y, int yCol) {
        T vs = activation("sgmvExpand", "v", v);
        T ys = activation("sgmvExpand", "y", y);
        ShapeChecks.checkSegments("sgmvExpand", segments, weights, Math.min(v.rows(), y.rows()));
        List<LoraSegment<T>> adapted = adapted("sgmvExpand", segments, weights, "lora B", slot -> {
            ShapeChecks.checkExpandSlot("sgmvExpand", weights, slot, v, vCol, y, yCol);
            return weights.b()[slot];
        });
        sgmvExpand(vs, vCol, adapted, ys, yCol);
    }

    /** {@code y[r, yCol + o] += scale · v[r, vCol : vCol + rank] · B[o]ᵀ} for the rows of each segment, B its weight. */
    protected abstract void sgmvExpand(T v, int vCol, List<LoraSegment<T>> segments, T y, int yCol);

    /**
     * The segments whose slot holds an adapter, in order, each with the A or B that {@code checkedWeight} returns
     * for its slot (after checking its shapes) as this backend's tensor.
     */
    private List<LoraSegment<T>> adapted(String op, Segments segments, LoraWeights weights, String role,
                                         IntFunction<Tensor> checkedWeight) {
        loraSegments.clear();
        for (int i = 0; i < segments.count(); i++) {
            int slot = segments.slots()[i];
            if (weights.present(slot)) {
                T w = own(op, role, checkedWeight.apply(slot));
                loraSegments.add(new LoraSegment<>(segments.starts()[i], segments.starts()[i + 1], w,
                        weights.rank()[slot], weights.scale()[slot]));
            }
        }
        return loraSegments;
    }

    // ---- argument checks ------------------------------------------------------------------------

    /**
     * {@code t} as a tensor of this backend that is still alive, for the {@code role} argument of {@code op};
     * otherwise an {@link IllegalArgumentException} that says which and why (null, another backend's, freed).
     */
    @SuppressWarnings("unchecked")
    protected final T own(String op, String role, Tensor t) {
        if (t == null) {
            throw ShapeChecks.fail(op, role + " is null");
        }
        if (!(t instanceof RowMajorTensor<?> rt) || rt.owner() != this) {
            throw ShapeChecks.fail(op, role + " " + t + " was not made by this backend (" + name() + ")");
        }
        if (rt.released()) {
            throw ShapeChecks.fail(op, role + " " + t + " was freed");
        }
        return (T) rt; // this backend makes tensors of class T only
    }

    /** {@link #own}, and an activation (made by {@code allocate}): operations write only those. */
    protected final T activation(String op, String role, Tensor t) {
        T rt = own(op, role, t);
        if (rt.isWeight()) {
            throw ShapeChecks.fail(op, role + " " + t + " is a weight; an activation from allocate() is needed");
        }
        return rt;
    }

    /** {@code kv} as this backend's KV storage, or the failure naming {@code op}. */
    protected abstract K kv(String op, KvStorage kv);
}
