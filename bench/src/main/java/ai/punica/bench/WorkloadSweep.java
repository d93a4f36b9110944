package ai.punica.bench;

import ai.punica.model.ModelConfig;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * What {@link DecodeStepBench} and {@link GenerateThroughputBench} sweep: Punica's adapter workloads (MLSys'24
 * §7.1, {@link DecodeStepBench#segmentLengths}) × batch sizes, for one model shape on one backend, from
 * {@code --backend}, {@code --shape}, {@code --workloads}, {@code --batches}, {@code --seed} and {@code --out}.
 * Every workload name and batch size is checked when read, before any weight is made.
 *
 * @param model   the model of {@code shape} ({@link DecodeStepBench#modelConfig})
 * @param batches batch sizes, in the order given
 * @param out     the CSV file to write, or null for none
 */
record WorkloadSweep(String backend, String shape, ModelConfig model, List<String> workloads, int[] batches,
                     long seed, Path out) {

    /** Punica's five workloads, in the order of its tables: the default of {@code --workloads}. */
    static final String ALL_WORKLOADS = "none,identical,uniform,skewed,distinct";

    /** The sweep the command line asks for; {@code defaultBatches} where it gives no {@code --batches}. */
    static WorkloadSweep read(BenchArgs args, String defaultBatches) {
        List<String> workloads = args.strings("workloads", ALL_WORKLOADS);
        int[] batches = args.integers("batches", defaultBatches);
        for (int b : batches) {
            if (b < 1) {
                throw new IllegalArgumentException("--batches: " + b + " is not a batch size (at least 1)");
            }
        }
        workloads.forEach(w -> DecodeStepBench.segmentLengths(w, 1)); // an unknown name fails here, naming the known
        return new WorkloadSweep(args.backend(), args.shape(), DecodeStepBench.modelConfig(args.shape()), workloads,
                batches, args.seed(), args.out());
    }

    int maxBatch() {
        return Arrays.stream(batches).max().orElseThrow();
    }

    /** The most distinct adapters one (workload, batch size) case of the sweep uses. */
    int maxAdapters() {
        int most = 0;
        for (String workload : workloads) {
            for (int b : batches) {
                if (!workload.equals("none")) {
                    most = Math.max(most, DecodeStepBench.segmentLengths(workload, b).length);
                }
            }
        }
        return most;
    }
}
