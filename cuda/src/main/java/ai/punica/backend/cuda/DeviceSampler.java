package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.KernelConstants.MAX_TOP;
import static ai.punica.backend.cuda.KernelConstants.P_BIAS_BEGIN;
import static ai.punica.backend.cuda.KernelConstants.P_BIAS_END;
import static ai.punica.backend.cuda.KernelConstants.OUT_INTS;
import static ai.punica.backend.cuda.KernelConstants.P_FREQUENCY;
import static ai.punica.backend.cuda.KernelConstants.P_LOGPROBS;
import static ai.punica.backend.cuda.KernelConstants.P_MIN_P;
import static ai.punica.backend.cuda.KernelConstants.P_PENALTY_BEGIN;
import static ai.punica.backend.cuda.KernelConstants.P_PENALTY_END;
import static ai.punica.backend.cuda.KernelConstants.P_PRESENCE;
import static ai.punica.backend.cuda.KernelConstants.P_REPETITION;
import static ai.punica.backend.cuda.KernelConstants.P_TEMPERATURE;
import static ai.punica.backend.cuda.KernelConstants.P_TOP_K;
import static ai.punica.backend.cuda.KernelConstants.P_TOP_P;
import static ai.punica.backend.cuda.KernelConstants.P_UNIFORM_HI;
import static ai.punica.backend.cuda.KernelConstants.P_UNIFORM_LO;
import static ai.punica.backend.cuda.KernelConstants.ROW_INTS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Sampling next to the logits (sampling.cu's {@code sample_rows}, one block per row): only each row's token,
 * and the log-probabilities it asked for, come back to the host.
 *
 * <pre>
 *  SamplingBatch ─► per-row parameters + penalty pairs + bias pairs (ints) ─► ring ─┐
 *  logits [rows, vocab] f32 (bf16) ─► sample_rows(_bf16) (float32 work rows in the workspace) ─► OUT_INTS per row ─► ring ─► tokens
 * </pre>
 */
final class DeviceSampler {
    private final DeviceParts parts;
    /** float32 [rows, vocab] work rows of the sampling kernel; grows, never shrinks. */
    private long workspace;
    private long workspaceBytes;

    DeviceSampler(DeviceParts parts) {
        this.parts = parts;
    }

    /** One token per row of {@code logits}; waits for the stream. */
    List<SampledToken> sample(CudaTensor l, SamplingBatch batch) {
        int rows = l.rows();
        int vocab = l.cols();
        if (rows == 0) {
            return List.of();
        }
        long meta = parts.ring().ints(samplingMeta(batch));
        ensureWorkspace((long) rows * vocab * 4);
        long outBytes = (long) rows * OUT_INTS * 4;
        long out = parts.ring().reserve(outBytes);
        parts.kernels().launchSampleRows(l, meta, workspace, parts.ring().device(out));
        parts.ring().toHost(out, outBytes);
        int[] values = new int[rows * OUT_INTS];
        MemorySegment.copy(parts.ring().host(), JAVA_INT, out, values, 0, values.length);
        List<SampledToken> tokens = new ArrayList<>(rows);
        for (int r = 0; r < rows; r++) {
            int at = r * OUT_INTS;
            if (batch.row(r).logprobs() < 0) {
                tokens.add(SampledToken.of(values[at]));
                continue;
            }
            int n = values[at + 2];
            int[] topTokens = Arrays.copyOfRange(values, at + 3, at + 3 + n);
            float[] topLogprobs = new float[n];
            for (int i = 0; i < n; i++) {
                topLogprobs[i] = Float.intBitsToFloat(values[at + 3 + MAX_TOP + i]);
            }
            tokens.add(new SampledToken(values[at], Float.intBitsToFloat(values[at + 1]), topTokens, topLogprobs));
        }
        return tokens;
    }

    /**
     * The kernel's metadata: per row (ints, floats as bits) the parameters at the P_* places of
     * kernel_constants.cuh, then the (token, count) penalty pairs, then the (token, bias bits) logit-bias
     * pairs (a row's P_BIAS_* index pairs of the same array, so they start after the penalty pairs).
     */
    private static int[] samplingMeta(SamplingBatch batch) {
        int rows = batch.size();
        int pairs = batch.penaltyTokens().length;
        int biases = batch.biasTokens().length;
        int[] meta = new int[rows * ROW_INTS + 2 * (pairs + biases)];
        for (int r = 0; r < rows; r++) {
            SamplingRow p = batch.row(r);
            long uniform = Double.doubleToRawLongBits(p.uniform());
            int at = r * ROW_INTS;
            meta[at + P_TEMPERATURE] = Float.floatToRawIntBits(p.temperature());
            meta[at + P_TOP_K] = p.topK();
            meta[at + P_TOP_P] = Float.floatToRawIntBits(p.topP());
            meta[at + P_MIN_P] = Float.floatToRawIntBits(p.minP());
            meta[at + P_REPETITION] = Float.floatToRawIntBits(p.repetitionPenalty());
            meta[at + P_PRESENCE] = Float.floatToRawIntBits(p.presencePenalty());
            meta[at + P_FREQUENCY] = Float.floatToRawIntBits(p.frequencyPenalty());
            meta[at + P_UNIFORM_LO] = (int) uniform;
            meta[at + P_UNIFORM_HI] = (int) (uniform >>> 32);
            meta[at + P_LOGPROBS] = p.logprobs();
            meta[at + P_PENALTY_BEGIN] = batch.penaltyStarts()[r];
            meta[at + P_PENALTY_END] = batch.penaltyStarts()[r + 1];
            meta[at + P_BIAS_BEGIN] = pairs + batch.biasStarts()[r];
            meta[at + P_BIAS_END] = pairs + batch.biasStarts()[r + 1];
        }
        int base = rows * ROW_INTS;
        for (int i = 0; i < pairs; i++) {
            meta[base + 2 * i] = batch.penaltyTokens()[i];
            meta[base + 2 * i + 1] = batch.penaltyCounts()[i];
        }
        base += 2 * pairs;
        for (int i = 0; i < biases; i++) {
            meta[base + 2 * i] = batch.biasTokens()[i];
            meta[base + 2 * i + 1] = Float.floatToRawIntBits(batch.biasValues()[i]);
        }
        return meta;
    }

    private void ensureWorkspace(long bytes) {
        if (bytes <= workspaceBytes) {
            return;
        }
        if (workspace != 0) {
            parts.memory().releaseWhenIdle(workspace);
        }
        workspaceBytes = Math.max(bytes, 2 * workspaceBytes);
        workspace = parts.memory().alloc(workspaceBytes);
    }
}
