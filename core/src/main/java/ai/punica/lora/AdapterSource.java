package ai.punica.lora;

import java.nio.file.Path;
import java.util.Optional;

/**
 * Where an adapter that nobody registered may be found when a request names it (on-demand resolution, as
 * LoRAX and vLLM's LoRA resolvers do). A source answers with a local directory holding
 * {@code adapter_config.json} and {@code adapter_model.safetensors}; a remote source (an object store, a
 * model hub) would download into a cache directory of its own and answer with that.
 *
 * <p>{@link AdapterManager} asks its sources in order, at most once per name at a time (concurrent requests
 * for the same cold adapter share one lookup and one load), and remembers names no source has for a short
 * time, so a client repeating a wrong name does not make the server search again for each request.
 * Implementations are called from loader threads and must be thread-safe.
 */
public interface AdapterSource {

    /**
     * The directory of the adapter called {@code name}, or empty when this source has none by that name.
     * A name that could reach outside the source (an absolute path, {@code ..}, a symbolic link leading out)
     * must be answered with empty, never with a directory elsewhere.
     *
     * @throws java.io.UncheckedIOException when the source cannot be read at all (not for a missing name)
     */
    Optional<Path> locate(String name);

    /** Says where this source looks, for log lines and error messages (e.g. the root directory). */
    String describe();
}
