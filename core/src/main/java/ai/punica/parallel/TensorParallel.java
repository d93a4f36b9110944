package ai.punica.parallel;

import ai.punica.backend.BackendProvider;
import ai.punica.backend.Backends;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.WeightSource;
import java.util.ServiceLoader;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where an engine's tensor-parallel model comes from: the ranks' backends (one device each on a GPU backend,
 * threads on a host backend) and their communicators, NCCL where a {@link CommunicatorProvider} registered
 * for the backend (the CUDA module's), else {@link InMemoryCommunicator} through host memory.
 */
public final class TensorParallel {
    private static final Logger log = LoggerFactory.getLogger(TensorParallel.class);

    private TensorParallel() {
    }

    /**
     * Communicators for the ranks of one backend kind, found through
     * {@code META-INF/services/ai.punica.parallel.TensorParallel$CommunicatorProvider}.
     */
    public interface CommunicatorProvider {
        /** The backend name this provider serves ("cuda"). */
        String backend();

        /** Makes the ranks' communicators; the ranks' backends are made by then. */
        TensorParallelGroup.CommunicatorFactory factory();
    }

    /**
     * Rank 0's model of {@code config} split over {@code ranks}: what an engine drives. Closing its backend
     * closes every rank.
     *
     * @param firstDevice the device of rank 0 on a GPU backend; rank r takes {@code firstDevice + r}
     * @throws IllegalArgumentException with a one-line reason: the model does not split, too few devices
     */
    public static LlamaModel load(ModelConfig config, WeightSource weights, String backendName, int firstDevice,
                                  int ranks, TensorParallelGroup.Sizes sizes) {
        String problem = ShardLayout.problem(config, ranks);
        if (problem != null) {
            throw new IllegalArgumentException(problem);
        }
        BackendProvider provider = Backends.provider(backendName);
        int devices = provider.deviceCount();
        if (devices > 0 && firstDevice + ranks > devices) {
            throw new IllegalArgumentException("tensor parallel size " + ranks + " from device " + firstDevice
                    + " needs devices " + firstDevice + ".." + (firstDevice + ranks - 1) + " but backend '"
                    + provider.name() + "' has " + devices);
        }
        TensorParallelGroup.CommunicatorFactory communicators = communicators(provider);
        TensorParallelGroup group = TensorParallelGroup.load(config, weights, ranks,
                r -> devices > 0 ? provider.create(firstDevice + r) : provider.create(), communicators, sizes);
        log.info("model split over {} tensor-parallel ranks on backend {} ({} heads, {} KV heads, intermediate {} "
                        + "per rank)", ranks, provider.name(), config.numHeads() / ranks,
                group.layout().kvHeadsPerRank(), config.intermediateSize() / ranks);
        return group.leader();
    }

    private static TensorParallelGroup.CommunicatorFactory communicators(BackendProvider provider) {
        for (CommunicatorProvider p : ServiceLoader.load(CommunicatorProvider.class)) {
            if (p.backend().equals(provider.name())) {
                return p.factory();
            }
        }
        if (provider.hasDevice()) {
            log.warn("no communicator registered for backend {}: the ranks all-reduce through host memory (slow)",
                    provider.name());
        }
        return backends -> InMemoryCommunicator.group(backends);
    }
}
