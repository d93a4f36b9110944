package ai.punica.backend;

/**
 * The LoRA weights of one projection of one layer, for every adapter slot of a backend:
 * {@code a[slot]} is {@code [rank, inFeatures]}, {@code b[slot]} is {@code [outFeatures, rank]},
 * {@code scale[slot]} is lora_alpha / r (or lora_alpha / √r with rsLoRA). A null {@code a[slot]} means
 * the adapter in that slot does not adapt this projection. The arrays are owned by the engine thread
 * and change only between steps.
 */
public record LoraWeights(Tensor[] a, Tensor[] b, int[] rank, float[] scale) {

    public static LoraWeights empty(int slots) {
        return new LoraWeights(new Tensor[slots], new Tensor[slots], new int[slots], new float[slots]);
    }

    public int slots() {
        return a.length;
    }

    public boolean present(int slot) {
        return slot >= 0 && a[slot] != null;
    }

    /** Largest rank over occupied slots (width of the shrink output). */
    public int maxRank() {
        int max = 0;
        for (int i = 0; i < rank.length; i++) {
            if (a[i] != null) {
                max = Math.max(max, rank[i]);
            }
        }
        return max;
    }
}
