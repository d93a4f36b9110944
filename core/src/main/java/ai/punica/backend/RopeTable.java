package ai.punica.backend;

/**
 * Rotary embedding in the HuggingFace "rotate half" convention: for a head vector x of size d and
 * i &lt; d/2, with θ = position · invFreq[i]:
 * {@code x'[i] = (x[i]·cos θ − x[i+d/2]·sin θ)·f} and {@code x'[i+d/2] = (x[i+d/2]·cos θ + x[i]·sin θ)·f},
 * f = {@code attentionFactor} (1 except for YaRN). θ is computed in float32 as HF does.
 */
public record RopeTable(float[] invFreq, float attentionFactor) {
    public RopeTable {
        invFreq = invFreq.clone();
    }

    @Override
    public float[] invFreq() {
        return invFreq.clone();
    }

    /** invFreq[i] without a copy, for kernels. */
    public float invFreq(int i) {
        return invFreq[i];
    }

    public int halfDim() {
        return invFreq.length;
    }
}
