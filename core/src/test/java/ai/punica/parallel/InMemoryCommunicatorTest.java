package ai.punica.parallel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.Backend;
import ai.punica.backend.Tensor;
import ai.punica.backend.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Three ranks as threads, each with its own CPU backend. */
class InMemoryCommunicatorTest {
    private static final int RANKS = 3;
    private final List<Backend> backends = new ArrayList<>();
    private List<Communicator> comms;
    private ExecutorService threads;

    @BeforeEach
    void open() {
        for (int r = 0; r < RANKS; r++) {
            backends.add(new CpuBackend(new CpuBackend.Options(1, true)));
        }
        comms = InMemoryCommunicator.group(backends);
        threads = Executors.newFixedThreadPool(RANKS);
    }

    @AfterEach
    void close() {
        threads.shutdownNow();
        backends.forEach(Backend::close);
    }

    private interface RankTask {
        float[] run(int rank) throws Exception;
    }

    private float[][] onEveryRank(RankTask task) throws Exception {
        List<Future<float[]>> futures = new ArrayList<>();
        for (int r = 0; r < RANKS; r++) {
            int rank = r;
            futures.add(threads.submit(() -> task.run(rank)));
        }
        float[][] out = new float[RANKS][];
        for (int r = 0; r < RANKS; r++) {
            out[r] = futures.get(r).get(30, TimeUnit.SECONDS);
        }
        return out;
    }

    private static float[] random(int n, long seed) {
        Random rnd = new Random(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rnd.nextGaussian();
        }
        return v;
    }

    @Test
    void allReduceSumGivesEveryRankTheSameSumBitForBit() throws Exception {
        int rows = 5;
        int cols = 7;
        float[][] sums = onEveryRank(rank -> {
            Backend b = backends.get(rank);
            Tensor t = b.allocate(rows, cols);
            b.upload(random(rows * cols, rank), t);
            comms.get(rank).allReduceSum(t);
            comms.get(rank).allReduceSum(t); // twice: the second sums RANKS copies of the first
            float[] out = new float[rows * cols];
            b.download(t, out);
            return out;
        });
        for (int i = 0; i < rows * cols; i++) {
            double once = 0;
            for (int r = 0; r < RANKS; r++) {
                once += random(rows * cols, r)[i];
            }
            assertThat((double) sums[0][i]).isCloseTo(RANKS * once, org.assertj.core.data.Offset.offset(1e-4));
        }
        assertThat(sums[1]).containsExactly(sums[0]);
        assertThat(sums[2]).containsExactly(sums[0]);
    }

    @Test
    void allGatherPutsRankRsRowsInBlockR() throws Exception {
        float[][] gathered = onEveryRank(rank -> {
            Backend b = backends.get(rank);
            Tensor local = b.allocate(2, 2);
            b.upload(new float[] {rank, rank + 0.5f, 10 + rank, 10.5f + rank}, local);
            Tensor out = b.allocate(2 * RANKS, 2);
            comms.get(rank).allGather(local, out);
            float[] host = new float[2 * 2 * RANKS];
            b.download(out, host);
            return host;
        });
        float[] expected = {0, 0.5f, 10, 10.5f, 1, 1.5f, 11, 11.5f, 2, 2.5f, 12, 12.5f};
        for (float[] g : gathered) {
            assertThat(g).containsExactly(expected);
        }
    }

    @Test
    void abortReleasesRanksWaitingForOneThatFailedAndRecoverReadiesTheGroup() throws Exception {
        List<Future<?>> waiting = new ArrayList<>();
        for (int r = 0; r < RANKS - 1; r++) {
            int rank = r;
            waiting.add(threads.submit(() -> {
                Backend b = backends.get(rank);
                Tensor t = b.allocate(1, 4);
                b.upload(new float[4], t);
                comms.get(rank).allReduceSum(t); // rank 2 never comes
                return null;
            }));
        }
        Thread.sleep(200);
        comms.get(RANKS - 1).abort();
        for (Future<?> f : waiting) {
            assertThatThrownBy(() -> f.get(10, TimeUnit.SECONDS)).rootCause()
                    .hasMessageContaining("another rank failed during this step's collective");
        }
        // A rank arriving after the abort does not wait either.
        Tensor late = backends.get(RANKS - 1).allocate(1, 4);
        backends.get(RANKS - 1).upload(new float[4], late);
        assertThatThrownBy(() -> comms.get(RANKS - 1).allReduceSum(late))
                .hasMessageContaining("another rank failed");
        comms.getFirst().recover();
        float[][] sums = onEveryRank(rank -> {
            Backend b = backends.get(rank);
            Tensor t = b.allocate(1, 2);
            b.upload(new float[] {1, rank}, t);
            comms.get(rank).allReduceSum(t);
            float[] out = new float[2];
            b.download(t, out);
            return out;
        });
        assertThat(sums[2]).containsExactly(3f, 3f);
    }
}
