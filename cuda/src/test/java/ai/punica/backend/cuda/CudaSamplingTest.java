package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.assertBitIdentical;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.SampledToken;
import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.ScalarSampler;
import ai.punica.backend.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@code CudaBackend.sample} against the reference backend's (the {@link ScalarSampler} definition) on
 * seeded random bf16 logits, every combination of temperature, top-k, top-p, min-p, penalties and
 * log-probabilities, at vocabularies of 1024, 32000 and 128256 and 1 to 64 rows. Both backends see the
 * same bf16-rounded logits. Greedy tokens must be identical. Sampled tokens must be identical except
 * where the decision sits on a boundary the two can round differently: the draw within 1e-5 of a
 * cumulative-probability boundary, or top-p's target within 1e-5 of a cumulative-mass step (the GPU
 * computes exp in float32 and sums in another order); fewer than 1% of the sampled rows may be such
 * cases. Log-probabilities within 2e-3. The same on float32 logits (the model's, {@code allocateLogits}), and
 * with logit biases and min_tokens' bans.
 */
@Tag("gpu")
class CudaSamplingTest extends GpuBackendTest {
    static final double BOUNDARY = 1e-5;
    static final double MAX_BOUNDARY_FRACTION = 0.01;
    static final double LOGPROB_TOLERANCE = 2e-3;
    static final int[] VOCABS = {1024, 32000, 128256};

    /** Every combination of the parameter classes, in a seeded order; values drawn within each class. */
    static List<SamplingRow> everyCombination(SplittableRandom random, int vocab) {
        List<SamplingRow> rows = new ArrayList<>();
        float[] temperatures = {0f, 0.5f, 1f, 1.7f};
        int[] topKs = {0, 1, 40, vocab - 1, vocab + 5};
        float[] topPs = {1f, 0.95f, 0.6f, 1e-4f};
        float[] minPs = {0f, 0.02f, 0.3f};
        for (float temperature : temperatures) {
            for (int topK : topKs) {
                for (float topP : topPs) {
                    for (float minP : minPs) {
                        for (int penalties = 0; penalties < 4; penalties++) {
                            float repetition = penalties % 2 == 1 ? (random.nextBoolean() ? 1.3f : 0.7f) : 1f;
                            float presence = penalties >= 2 ? (float) random.nextDouble(-2, 2) : 0f;
                            float frequency = penalties >= 2 ? (float) random.nextDouble(-2, 2) : 0f;
                            int logprobs = random.nextInt(4) == 0 ? -1 : random.nextInt(0, SamplingRow.MAX_LOGPROBS + 1);
                            rows.add(new SamplingRow(temperature, random.nextInt(8) == 0 ? -1 : topK, topP, minP,
                                    repetition, presence, frequency, random.nextDouble(), logprobs));
                        }
                    }
                }
            }
        }
        // Shuffle so that each batch mixes classes.
        for (int i = rows.size() - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            SamplingRow t = rows.get(i);
            rows.set(i, rows.get(j));
            rows.set(j, t);
        }
        return rows;
    }

    /** Logits of one row, bf16-rounded: Gaussian at a random scale, some rows with many equal values. */
    static void randomRow(SplittableRandom random, float[] dst, int offset, int vocab) {
        randomRow(random, dst, offset, vocab, true);
    }

    /** As above, float32 values unless {@code bf16} (the model's logits are float32 since issue #14 item 4). */
    static void randomRow(SplittableRandom random, float[] dst, int offset, int vocab, boolean bf16) {
        double scale = new double[] {0.5, 2, 4, 8}[random.nextInt(4)];
        boolean coarse = random.nextInt(4) == 0;
        double shift = random.nextDouble(-5, 5);
        for (int i = 0; i < vocab; i++) {
            double v = random.nextGaussian() * scale + shift;
            if (coarse) {
                v = Math.round(v * 4) / 4.0;
            }
            float f = (float) (v == 0 ? 0.125 : v);
            dst[offset + i] = bf16 ? DType.bf16ToFloat(DType.floatToBf16(f)) : f;
        }
    }

    /** Distinct random penalty tokens with counts (0: prompt only) for the row added last. */
    static void randomPenalties(SplittableRandom random, SamplingBatch.Builder batch, int vocab) {
        Set<Integer> tokens = new LinkedHashSet<>();
        for (int i = random.nextInt(0, 40); i > 0; i--) {
            tokens.add(random.nextInt(vocab));
        }
        for (int t : tokens) {
            batch.penalty(t, random.nextInt(0, 4));
        }
    }

    /** Row r of {@code batch} alone, with other parameters (same penalty tokens and logit biases). */
    static SamplingBatch alone(SamplingBatch batch, int r, SamplingRow row) {
        SamplingBatch.Builder b = SamplingBatch.builder().row(row);
        for (int i = batch.penaltyStarts()[r]; i < batch.penaltyStarts()[r + 1]; i++) {
            b.penalty(batch.penaltyTokens()[i], batch.penaltyCounts()[i]);
        }
        for (int i = batch.biasStarts()[r]; i < batch.biasStarts()[r + 1]; i++) {
            b.bias(batch.biasTokens()[i], batch.biasValues()[i]);
        }
        return b.build();
    }

    /**
     * Distinct random logit biases for the row added last, as the engine sends them: logit_bias values in
     * [-100, 100] (some at the ends, some small), and -∞ on a few "stop ids" (min_tokens not reached).
     * Token {@code favoured} (when ≥ 0) gets +100, {@code banned} the -∞ of a stop id.
     */
    static void randomBiases(SplittableRandom random, SamplingBatch.Builder batch, int vocab, int favoured,
                             int banned) {
        Set<Integer> tokens = new LinkedHashSet<>();
        for (int i = random.nextInt(0, 30); i > 0; i--) {
            tokens.add(random.nextInt(vocab));
        }
        tokens.remove(favoured);
        tokens.remove(banned);
        if (favoured >= 0) {
            batch.bias(favoured, 100f);
        }
        if (banned >= 0) {
            batch.bias(banned, Float.NEGATIVE_INFINITY);
        }
        for (int t : tokens) {
            float bias = switch (random.nextInt(4)) {
                case 0 -> -100f;
                case 1 -> Float.NEGATIVE_INFINITY;
                default -> (float) random.nextDouble(-5, 5);
            };
            batch.bias(t, bias);
        }
    }

    /**
     * Whether row r's decision sits within {@link #BOUNDARY} of a boundary of the reference: the draw
     * u · kept mass near a cumulative kept probability, or top-p's target near a cumulative mass of the
     * sorted top-k set.
     */
    static boolean atBoundary(ScalarSampler sampler, float[] logits, int offset, int vocab, SamplingBatch batch, int r) {
        SamplingRow row = batch.row(r);
        float[] kept = sampler.keptProbabilities(logits, offset, vocab, batch, r);
        double total = 0;
        for (int i = 0; i < vocab; i++) {
            total += kept[i];
        }
        double u = row.uniform() * total;
        double cumulative = 0;
        double nearest = Math.abs(u);
        for (int i = 0; i < vocab; i++) {
            cumulative += kept[i];
            nearest = Math.min(nearest, Math.abs(cumulative - u));
        }
        if (nearest < BOUNDARY) {
            return true;
        }
        if (row.topP() >= 1f) {
            return false;
        }
        SamplingRow topKOnly = new SamplingRow(row.temperature(), row.topK(), 1f, 0f, row.repetitionPenalty(),
                row.presencePenalty(), row.frequencyPenalty(), row.uniform(), -1);
        float[] sorted = sampler.keptProbabilities(logits, offset, vocab, alone(batch, r, topKOnly), 0).clone();
        Arrays.sort(sorted);
        double keptMass = 0;
        for (int i = vocab - 1; i >= 0 && sorted[i] > 0; i--) {
            keptMass += sorted[i];
        }
        double target = row.topP() * keptMass;
        double mass = 0;
        for (int i = vocab - 1; i >= 0 && sorted[i] > 0; i--) {
            mass += sorted[i];
            if (Math.abs(mass - target) < BOUNDARY * keptMass) {
                return true;
            }
        }
        return false;
    }

    @Test
    void sampledTokensAndLogprobsMatchTheReference() {
        compareWithTheReference(new SplittableRandom(31), VOCABS, true);
    }

    /**
     * The model's logits are float32 ({@code allocateLogits}, the lm_head GEMM's fp32 output) and read as such
     * by {@code sample_rows}: the same comparison on unrounded float32 logits.
     */
    @Test
    void float32LogitsSampleAsTheReference() {
        compareWithTheReference(new SplittableRandom(32), new int[] {32000, 128256}, false);
    }

    private void compareWithTheReference(SplittableRandom random, int[] vocabs, boolean bf16) {
        ScalarSampler sampler = new ScalarSampler();
        for (int vocab : vocabs) {
            List<SamplingRow> combinations = everyCombination(random, vocab);
            int greedy = 0;
            int sampled = 0;
            int boundary = 0;
            int withLogprobs = 0;
            double worstLogprob = 0;
            List<String> failures = new ArrayList<>();
            int[] batchRows = {1, 64, 3, 17, 64, 2, 33, 64, 5, 64};
            int next = 0;
            for (int b = 0; next < combinations.size(); b++) {
                int rows = Math.min(batchRows[b % batchRows.length], combinations.size() - next);
                float[] logits = new float[rows * vocab];
                SamplingBatch.Builder builder = SamplingBatch.builder();
                for (int r = 0; r < rows; r++) {
                    randomRow(random, logits, r * vocab, vocab, bf16);
                    builder.row(combinations.get(next++));
                    randomPenalties(random, builder, vocab);
                }
                SamplingBatch batch = builder.build();
                Tensor g = bf16 ? gpu.allocate(rows, vocab) : gpu.allocateLogits(rows, vocab);
                assertThat(g.dtype()).isEqualTo(bf16 ? DType.BF16 : DType.F32);
                Tensor c = ref.allocate(rows, vocab);
                gpu.upload(logits, g);
                ref.upload(logits, c);
                List<SampledToken> got = gpu.sample(g, batch);
                List<SampledToken> want = ref.sample(c, batch);
                float[] after = new float[rows * vocab];
                gpu.download(g, after);
                assertBitIdentical("logits are not modified", after, logits);
                gpu.free(g);
                ref.free(c);
                for (int r = 0; r < rows; r++) {
                    SamplingRow row = batch.row(r);
                    SampledToken gt = got.get(r);
                    SampledToken wt = want.get(r);
                    String what = "vocab " + vocab + " batch " + b + " row " + r + "/" + rows + " " + row;
                    if (row.isGreedy()) {
                        greedy++;
                        if (gt.token() != wt.token()) {
                            failures.add(what + ": greedy token " + gt.token() + ", reference " + wt.token());
                        }
                    } else {
                        sampled++;
                        if (gt.token() != wt.token()) {
                            if (atBoundary(sampler, logits, r * vocab, vocab, batch, r)) {
                                boundary++;
                                System.out.println("CHECK sampling boundary case " + what + ": token " + gt.token()
                                        + ", reference " + wt.token());
                            } else {
                                failures.add(what + ": token " + gt.token() + ", reference " + wt.token());
                            }
                        }
                    }
                    if (row.logprobs() < 0) {
                        if (!Float.isNaN(gt.logprob()) || gt.topTokens().length != 0) {
                            failures.add(what + ": logprobs returned unasked: " + gt);
                        }
                        continue;
                    }
                    withLogprobs++;
                    // The GPU's token's log-probability, whichever token it picked.
                    SampledToken expected = ScalarSampler.logprobs(logits, r * vocab, vocab, gt.token(), row.logprobs());
                    worstLogprob = Math.max(worstLogprob, Math.abs(gt.logprob() - expected.logprob()));
                    if (!Arrays.equals(gt.topTokens(), expected.topTokens())) {
                        failures.add(what + ": top tokens " + Arrays.toString(gt.topTokens()) + ", reference "
                                + Arrays.toString(expected.topTokens()));
                        continue;
                    }
                    for (int i = 0; i < gt.topTokens().length; i++) {
                        worstLogprob = Math.max(worstLogprob, Math.abs(gt.topLogprobs()[i] - expected.topLogprobs()[i]));
                    }
                }
            }
            double fraction = (double) boundary / Math.max(1, sampled);
            boolean ok = failures.isEmpty() && fraction < MAX_BOUNDARY_FRACTION && worstLogprob <= LOGPROB_TOLERANCE;
            System.out.printf("CHECK sampling " + (bf16 ? "bf16" : "f32") + " vocab %d: %d greedy + %d sampled rows, %d mismatches, %d at a boundary"
                            + " (%.2f%%, limit %.0f%%), %d with logprobs, max |logprob error| %.2e (tol %.0e) %s%n",
                    vocab, greedy, sampled, failures.size(), boundary, 100 * fraction, 100 * MAX_BOUNDARY_FRACTION,
                    withLogprobs, worstLogprob, LOGPROB_TOLERANCE, ok ? "ok" : "FAIL");
            failures.stream().limit(20).forEach(f -> System.out.println("CHECK sampling FAIL " + f));
            assertThat(failures).as("vocab %d", vocab).isEmpty();
            assertThat(fraction).as("vocab %d: rows at a boundary", vocab).isLessThan(MAX_BOUNDARY_FRACTION);
            assertThat(worstLogprob).as("vocab %d: logprob error", vocab).isLessThanOrEqualTo(LOGPROB_TOLERANCE);
        }
    }

    /**
     * logit_bias and min_tokens' bans (biases, some -∞) with penalties and every sampling mode, on float32
     * logits as the model makes them, against the reference on the same rows: greedy tokens identical, sampled ones identical but at a boundary (as
     * above), a +100-biased token always the greedy choice, a banned (-∞) token never chosen, and the
     * log-probabilities still those of the raw logits.
     */
    @Test
    void logitBiasesAndStopBansMatchTheReference() {
        SplittableRandom random = new SplittableRandom(57);
        ScalarSampler sampler = new ScalarSampler();
        for (int vocab : VOCABS) {
            List<String> failures = new ArrayList<>();
            int sampled = 0;
            int boundary = 0;
            double worstLogprob = 0;
            for (int b = 0; b < 12; b++) {
                int rows = new int[] {1, 7, 64, 33}[b % 4];
                float[] logits = new float[rows * vocab];
                SamplingBatch.Builder builder = SamplingBatch.builder();
                int[] favoured = new int[rows];
                int[] banned = new int[rows];
                for (int r = 0; r < rows; r++) {
                    randomRow(random, logits, r * vocab, vocab, false);
                    float temperature = new float[] {0f, 0.7f, 1f, 1.5f}[random.nextInt(4)];
                    int mode = random.nextInt(3);
                    favoured[r] = mode == 0 ? random.nextInt(vocab) : -1;
                    // The stop ban falls on the row's argmax, where it changes the outcome.
                    banned[r] = mode == 1 ? ScalarSampler.argmax(logits, r * vocab, vocab) : -1;
                    builder.row(new SamplingRow(temperature, random.nextInt(3) == 0 ? 40 : 0,
                            random.nextBoolean() ? 1f : 0.9f, random.nextInt(3) == 0 ? 0.05f : 0f,
                            random.nextBoolean() ? 1.2f : 1f, 0f, random.nextBoolean() ? 0.5f : 0f,
                            random.nextDouble(), random.nextInt(3) == 0 ? 3 : -1));
                    randomPenalties(random, builder, vocab);
                    randomBiases(random, builder, vocab, favoured[r], banned[r]);
                }
                SamplingBatch batch = builder.build();
                assertThat(batch.hasBiases()).isTrue();
                Tensor g = gpu.allocateLogits(rows, vocab);
                Tensor c = ref.allocate(rows, vocab);
                gpu.upload(logits, g);
                ref.upload(logits, c);
                List<SampledToken> got = gpu.sample(g, batch);
                List<SampledToken> want = ref.sample(c, batch);
                gpu.free(g);
                ref.free(c);
                for (int r = 0; r < rows; r++) {
                    SamplingRow row = batch.row(r);
                    int token = got.get(r).token();
                    String what = "vocab " + vocab + " batch " + b + " row " + r + "/" + rows + " " + row;
                    if (banned[r] >= 0 && token == banned[r]) {
                        failures.add(what + ": picked the banned token " + token);
                    }
                    for (int i = batch.biasStarts()[r]; i < batch.biasStarts()[r + 1]; i++) {
                        if (batch.biasValues()[i] == Float.NEGATIVE_INFINITY && batch.biasTokens()[i] == token) {
                            failures.add(what + ": picked " + token + ", biased by -inf");
                        }
                    }
                    if (row.isGreedy() && favoured[r] >= 0 && token != favoured[r]) {
                        failures.add(what + ": greedy " + token + ", not the +100 token " + favoured[r]);
                    }
                    if (token != want.get(r).token()) {
                        if (!row.isGreedy() && atBoundary(sampler, logits, r * vocab, vocab, batch, r)) {
                            boundary++;
                        } else {
                            failures.add(what + ": token " + token + ", reference " + want.get(r).token());
                        }
                    }
                    sampled += row.isGreedy() ? 0 : 1;
                    if (row.logprobs() >= 0) {
                        SampledToken raw = ScalarSampler.logprobs(logits, r * vocab, vocab, token, row.logprobs());
                        worstLogprob = Math.max(worstLogprob, Math.abs(got.get(r).logprob() - raw.logprob()));
                        if (!Arrays.equals(got.get(r).topTokens(), raw.topTokens())) {
                            failures.add(what + ": top tokens " + Arrays.toString(got.get(r).topTokens())
                                    + " are not the raw logits' " + Arrays.toString(raw.topTokens()));
                        }
                    }
                }
            }
            double fraction = (double) boundary / Math.max(1, sampled);
            System.out.printf("CHECK sampling biases vocab %d: %d mismatches, %d of %d sampled at a boundary, max "
                    + "|logprob error| %.2e %s%n", vocab, failures.size(), boundary, sampled, worstLogprob,
                    failures.isEmpty() ? "ok" : "FAIL");
            failures.stream().limit(20).forEach(f -> System.out.println("CHECK sampling biases FAIL " + f));
            assertThat(failures).as("vocab %d", vocab).isEmpty();
            assertThat(fraction).as("vocab %d: rows at a boundary", vocab).isLessThan(MAX_BOUNDARY_FRACTION);
            assertThat(worstLogprob).as("vocab %d: logprob error", vocab).isLessThanOrEqualTo(LOGPROB_TOLERANCE);
        }
    }

    @Test
    void sameUniformSameTokenAndDrawsCoverTheKeptSet() {
        // A flat distribution over 8 tokens of 128256: uniform draws at k/8 + 1/16 pick token k, in index order.
        int vocab = 128256;
        float[] logits = new float[vocab];
        Arrays.fill(logits, -20f);
        int[] hot = {5, 900, 31000, 64000, 64001, 100000, 128000, 128255};
        for (int t : hot) {
            logits[t] = 4f;
        }
        SamplingBatch.Builder builder = SamplingBatch.builder();
        for (int k = 0; k < hot.length; k++) {
            builder.row(new SamplingRow(1f, 8, 1f, 0f, 1f, 0f, 0f, (k + 0.5) / hot.length, 3));
        }
        float[] rows = new float[hot.length * vocab];
        for (int k = 0; k < hot.length; k++) {
            System.arraycopy(logits, 0, rows, k * vocab, vocab);
        }
        Tensor g = gpu.allocate(hot.length, vocab);
        gpu.upload(rows, g);
        List<SampledToken> got = gpu.sample(g, builder.build());
        gpu.free(g);
        int[] tokens = got.stream().mapToInt(SampledToken::token).toArray();
        System.out.println("CHECK sampling flat 8-token draws " + Arrays.toString(tokens) + " want " + Arrays.toString(hot));
        assertThat(tokens).containsExactly(hot);
        assertThat(got.getFirst().topTokens()).containsExactly(5, 900, 31000);
    }
}
