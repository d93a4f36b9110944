package ai.punica.lora;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * On-demand resolution of adapter names nobody registered: the policy of when to ask the
 * {@link AdapterSource}s, for {@link AdapterManager}, which installs what they find.
 * <ul>
 *   <li>one lookup and one load per cold name at a time: the first caller starts it on the loader, every
 *       concurrent caller for that name waits for the same one;</li>
 *   <li>a name no source has, or whose files did not load, is answered from {@link RecentMisses} for
 *       {@link AdapterOptions#missTtl}, so repeating it costs no lookup.</li>
 * </ul>
 */
final class AdapterResolver {
    private static final Logger log = LoggerFactory.getLogger(AdapterResolver.class);

    /** Reads, checks, registers and caches what a source found; false if the name was registered meanwhile. */
    @FunctionalInterface
    interface Installer {
        boolean install(String name, Path directory);
    }

    private final AdapterOptions options;
    private final Executor loader;
    private final Predicate<String> registered;
    private final Installer installer;
    private final RecentMisses misses;
    /** Resolutions under way, one per name. */
    private final Map<String, CompletableFuture<Void>> resolving = new ConcurrentHashMap<>();
    private final AtomicLong sourceLookups = new AtomicLong();
    private final AtomicLong resolutions = new AtomicLong();
    private final AtomicLong sharedResolutions = new AtomicLong();
    private final AtomicLong rememberedMisses = new AtomicLong();

    AdapterResolver(AdapterOptions options, Executor loader, Predicate<String> registered, Installer installer) {
        this.options = options;
        this.loader = loader;
        this.registered = registered;
        this.installer = installer;
        this.misses = new RecentMisses(options.missTtl().toNanos(), options.missCapacity());
    }

    /** See {@link AdapterManager#resolve}. */
    void resolve(String name) {
        if (registered.test(name)) {
            return;
        }
        String missed = misses.get(name, System.nanoTime());
        if (missed != null) {
            rememberedMisses.incrementAndGet();
            throw unavailable(name, missed);
        }
        if (options.sources().isEmpty()) {
            throw new AdapterUnavailableException(true, notFoundMessage(name));
        }
        CompletableFuture<Void> fresh = new CompletableFuture<>();
        CompletableFuture<Void> shared = resolving.putIfAbsent(name, fresh);
        if (shared == null) {
            try {
                loader.execute(() -> resolveFromSources(name, fresh));
            } catch (RuntimeException e) {
                resolving.remove(name, fresh);
                throw e;
            }
            shared = fresh;
        } else {
            sharedResolutions.incrementAndGet();
        }
        try {
            shared.join();
        } catch (CompletionException e) {
            if (e.getCause() instanceof AdapterUnavailableException u) {
                throw new AdapterUnavailableException(u.missing(), u.getMessage());
            }
            throw e;
        }
    }

    /** A name just registered by hand is no longer missing. */
    void forgetMiss(String name) {
        misses.forget(name);
    }

    long sourceLookups() {
        return sourceLookups.get();
    }

    long resolutions() {
        return resolutions.get();
    }

    long sharedResolutions() {
        return sharedResolutions.get();
    }

    long rememberedMisses() {
        return rememberedMisses.get();
    }

    private static String notFoundMessage(String name) {
        return "The model `" + name + "` does not exist.";
    }

    private static AdapterUnavailableException unavailable(String name, String message) {
        return new AdapterUnavailableException(message.equals(notFoundMessage(name)), message);
    }

    /** One resolution, on the loader: ask the sources in order, then have the manager install the adapter. */
    private void resolveFromSources(String name, CompletableFuture<Void> result) {
        try {
            if (registered.test(name)) {
                result.complete(null); // registered while this task was queued
                return;
            }
            String missed = misses.get(name, System.nanoTime());
            if (missed != null) {
                result.completeExceptionally(unavailable(name, missed)); // answered by a resolution just ended
                return;
            }
            sourceLookups.incrementAndGet();
            Path dir = null;
            AdapterSource from = null;
            for (AdapterSource source : options.sources()) {
                var found = source.locate(name);
                if (found.isPresent()) {
                    dir = found.get();
                    from = source;
                    break;
                }
            }
            if (dir == null) {
                misses.put(name, notFoundMessage(name), System.nanoTime());
                result.completeExceptionally(new AdapterUnavailableException(true, notFoundMessage(name)));
                return;
            }
            try {
                if (installer.install(name, dir)) {
                    resolutions.incrementAndGet();
                    log.info("resolved adapter {} on demand from {}", name, dir);
                }
            } catch (RuntimeException e) {
                String message = "The adapter `" + name + "` was found in " + from.describe()
                        + " but could not be loaded: " + e.getMessage();
                log.warn("on-demand load of adapter {} from {} failed: {}", name, dir, e.getMessage());
                misses.put(name, message, System.nanoTime());
                result.completeExceptionally(new AdapterUnavailableException(false, message));
                return;
            }
            result.complete(null);
        } catch (RuntimeException | Error e) {
            result.completeExceptionally(e);
        } finally {
            resolving.remove(name, result);
        }
    }
}
