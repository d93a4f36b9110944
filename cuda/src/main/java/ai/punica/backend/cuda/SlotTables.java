package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import ai.punica.backend.LoraWeights;
import ai.punica.backend.ShapeChecks;
import ai.punica.backend.Tensor;
import java.lang.foreign.MemorySegment;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * The device slot table of each LoRA projection (slot_table.cuh's {@code SlotTable}): {@code aPtr[slots] |
 * bPtr[slots] | rank[slots] | scale[slots]}, written through the staging ring when a slot changed. Every
 * SGMV call of a step asks for its tables (about 450 calls in a Llama-7B step); an unchanged projection is
 * recognised by comparing references and numbers, without touching a tensor.
 */
final class SlotTables {
    /**
     * A slot table on the device and what the host checked when it wrote it: the LoRA weights it was written
     * from (the tensors by identity), and the shapes every present slot agrees on.
     */
    static final class Table {
        final long device;
        final Tensor[] a;
        final Tensor[] b;
        final int[] rank;
        final float[] scale;
        /** {@link DeviceAllocator#freedTensors} when this was checked: a tensor freed since may be one of the table's. */
        long freedAt = -1;
        /** A's columns and B's rows, the same for every present slot; -1 while no slot is present. */
        int inFeatures = -1;
        int outFeatures = -1;

        Table(long device, int slots) {
            this.device = device;
            this.a = new Tensor[slots];
            this.b = new Tensor[slots];
            this.rank = new int[slots];
            this.scale = new float[slots];
        }

        /** Whether the table holds {@code w}'s slots and no tensor has been freed since it was checked. */
        boolean holds(LoraWeights w, long freed) {
            if (freed != freedAt) {
                return false;
            }
            Tensor[] wa = w.a();
            Tensor[] wb = w.b();
            int[] wr = w.rank();
            float[] ws = w.scale();
            for (int s = 0; s < a.length; s++) {
                Tensor ta = wa[s];
                if (ta != a[s] || wb[s] != b[s]) {
                    return false;
                }
                if (ta != null && (wr[s] != rank[s] || Float.floatToRawIntBits(ws[s]) != Float.floatToRawIntBits(scale[s]))) {
                    return false;
                }
            }
            return true;
        }

        /** The device address of the B pointers. */
        long bPointers(int slots) {
            return device + 8L * slots;
        }

        /** The device address of the ranks. */
        long ranks(int slots) {
            return device + 16L * slots;
        }

        /** The device address of the scales. */
        long scales(int slots) {
            return device + 20L * slots;
        }
    }

    private final DeviceParts parts;
    private final Map<LoraWeights, Table> tables = new IdentityHashMap<>();

    SlotTables(DeviceParts parts) {
        this.parts = parts;
    }

    /**
     * The device table of this projection's slots, checked and re-uploaded (in stream order) when a slot
     * changed: every present slot's A and B were made by this backend and not freed, A is
     * {@code [rank, in]} and B {@code [out, rank]} with one {@code in} and one {@code out} for all slots.
     */
    Table of(String op, LoraWeights weights) {
        int slots = weights.slots();
        Table t = tables.get(weights);
        if (t != null && t.holds(weights, parts.memory().freedTensors())) {
            return t;
        }
        long[] a = new long[slots];
        long[] b = new long[slots];
        int[] rank = new int[slots];
        float[] scale = new float[slots];
        int in = -1;
        int out = -1;
        for (int s = 0; s < slots; s++) {
            if (!weights.present(s)) {
                continue;
            }
            CudaTensor at = parts.memory().tensor(weights.a()[s], "lora A of slot " + s);
            if (weights.b()[s] == null) {
                throw ShapeChecks.fail(op, "lora B of slot " + s + " is missing while A is present");
            }
            CudaTensor bt = parts.memory().tensor(weights.b()[s], "lora B of slot " + s);
            int r = weights.rank()[s];
            if (!(at.rows() == r && bt.cols() == r)) {
                throw ShapeChecks.fail(op, "lora A " + at + " and B " + bt + " of slot " + s + " must be [rank " + r
                        + ", in] and [out, rank " + r + "]");
            }
            if (in >= 0 && at.cols() != in) {
                throw ShapeChecks.fail(op, "lora A of slot " + s + " " + at + " has " + at.cols() + " inputs, other slots " + in);
            }
            if (out >= 0 && bt.rows() != out) {
                throw ShapeChecks.fail(op, "lora B of slot " + s + " " + bt + " has " + bt.rows() + " outputs, other slots " + out);
            }
            in = at.cols();
            out = bt.rows();
            a[s] = at.ptr;
            b[s] = bt.ptr;
            rank[s] = r;
            scale[s] = weights.scale()[s];
        }
        if (t == null) {
            t = new Table(parts.memory().alloc(24L * slots), slots);
            tables.put(weights, t);
        }
        for (int s = 0; s < slots; s++) {
            boolean present = weights.present(s);
            t.a[s] = present ? weights.a()[s] : null;
            t.b[s] = present ? weights.b()[s] : null;
            t.rank[s] = rank[s];
            t.scale[s] = scale[s];
        }
        t.inFeatures = in;
        t.outFeatures = out;
        t.freedAt = parts.memory().freedTensors();
        long bytes = 24L * slots;
        long off = parts.ring().reserve(bytes);
        MemorySegment host = parts.ring().host();
        MemorySegment.copy(a, 0, host, JAVA_LONG, off, slots);
        MemorySegment.copy(b, 0, host, JAVA_LONG, off + 8L * slots, slots);
        MemorySegment.copy(rank, 0, host, JAVA_INT, off + 16L * slots, slots);
        MemorySegment.copy(scale, 0, host, JAVA_FLOAT, off + 20L * slots, slots);
        parts.ring().toDevice(off, t.device, bytes);
        return t;
    }

    /** Forgets every table (their blocks go with the allocator's at close). */
    void clear() {
        tables.clear();
    }
}
