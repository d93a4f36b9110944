package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.punica.Fixtures;
import ai.punica.HfReference;
import ai.punica.HfReference.Run;
import ai.punica.backend.Backend;
import ai.punica.backend.Tensor;
import ai.punica.model.ModelHarness;
import ai.punica.parallel.Communicator;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Tensor parallelism on 2 GPUs of one host with NCCL: the communicator's collectives against sums on the
 * host, and the fixture model split over GPUs 0 and 1 (one KV head each) against the same model on GPU 0
 * alone and against HF, with all four adapters in one batch. Skipped with the reason on a machine with
 * fewer than 2 GPUs or without NCCL.
 */
@Tag("gpu")
class TensorParallelGpuTest {

    @BeforeAll
    static void needsTwoGpusAndNccl() {
        GpuChecks.requireDevice();
        int devices = new CudaBackendProvider().deviceCount();
        assumeTrue(devices >= 2, () -> "tensor parallelism needs 2 GPUs; this machine has " + devices);
        try {
            Nccl.get();
        } catch (CudaException e) {
            assumeTrue(false, e::getMessage);
        }
        System.out.println("CHECK TensorParallelGpuTest devices " + devices);
    }

    @Test
    void ncclAllReduceAndAllGatherMatchTheHostOnTwoGpus() throws Exception {
        List<Backend> gpus = new ArrayList<>();
        ExecutorService threads = Executors.newFixedThreadPool(2);
        try {
            for (int d = 0; d < 2; d++) {
                int device = d;
                gpus.add(threads.submit(() -> (Backend) new CudaBackend(CudaOptions.defaults().toBuilder()
                        .device(device).build())).get());
            }
            List<Communicator> comms = NcclCommunicator.group(gpus);
            int rows = 37;
            int cols = 4096;
            float[][] in = new float[2][];
            for (int r = 0; r < 2; r++) {
                in[r] = GpuChecks.random(new SplittableRandom(160 + r), rows * cols, 1.0);
            }
            List<Future<float[][]>> results = new ArrayList<>();
            for (int r = 0; r < 2; r++) {
                int rank = r;
                results.add(threads.submit(() -> {
                    Backend b = gpus.get(rank);
                    Tensor t = b.allocate(rows, cols);
                    b.upload(in[rank], t);
                    comms.get(rank).allReduceSum(t);
                    float[] sum = new float[rows * cols];
                    b.download(t, sum);
                    Tensor local = b.allocate(rows, cols);
                    b.upload(in[rank], local);
                    Tensor gathered = b.allocate(2 * rows, cols);
                    comms.get(rank).allGather(local, gathered);
                    float[] all = new float[2 * rows * cols];
                    b.download(gathered, all);
                    b.free(t);
                    b.free(local);
                    b.free(gathered);
                    return new float[][] {sum, all};
                }));
            }
            for (int r = 0; r < 2; r++) {
                float[][] got = results.get(r).get(60, TimeUnit.SECONDS);
                for (int i = 0; i < rows * cols; i++) {
                    assertThat(got[0][i]).as("rank %d sum[%d]", r, i).isEqualTo(in[0][i] + in[1][i]);
                    assertThat(got[1][i]).as("rank %d gathered block 0", r).isEqualTo(in[0][i]);
                    assertThat(got[1][rows * cols + i]).as("rank %d gathered block 1", r).isEqualTo(in[1][i]);
                }
            }
            comms.forEach(Communicator::close);
        } finally {
            for (int d = 0; d < gpus.size(); d++) {
                Backend b = gpus.get(d);
                threads.submit(b::close).get();
            }
            threads.shutdownNow();
        }
    }

    @Test
    void fixtureModelOnTwoGpusMatchesOneGpuAndHf() {
        HfReference ref = HfReference.load();
        List<ModelHarness.Input> inputs = new ArrayList<>();
        for (Run run : ref.mixedBatch()) {
            inputs.add(new ModelHarness.Input(run.promptIds(), run.adapter()));
        }
        float[][] one;
        try (ModelHarness h = new ModelHarness(Fixtures.model(), CudaFixtureTest.adapters(), "cuda")) {
            one = h.lastLogits(inputs);
        }
        try (ModelHarness h = new ModelHarness(Fixtures.model(), CudaFixtureTest.adapters(), "cuda", 2)) {
            float[][] two = h.lastLogits(inputs);
            double worst = 0;
            for (int i = 0; i < inputs.size(); i++) {
                Run run = ref.mixedBatch().get(i);
                double vsOne = GpuChecks.relativeError(two[i], one[i]);
                double vsHf = GpuChecks.relativeError(two[i], run.lastLogits());
                worst = Math.max(worst, Math.max(vsOne, vsHf));
                assertThat(vsOne).as("TP=2 vs TP=1 row %d (%s / %s)", i, run.promptName(), run.adapter())
                        .isLessThanOrEqualTo(CudaFixtureTest.LOGIT_RELATIVE_TOLERANCE);
                assertThat(vsHf).as("TP=2 vs HF row %d (%s / %s)", i, run.promptName(), run.adapter())
                        .isLessThanOrEqualTo(CudaFixtureTest.LOGIT_RELATIVE_TOLERANCE);
            }
            System.out.printf("CHECK TensorParallelGpuTest TP=2 worst relative error %.3g (bound %.3g)%n", worst,
                    CudaFixtureTest.LOGIT_RELATIVE_TOLERANCE);
        }
    }
}
