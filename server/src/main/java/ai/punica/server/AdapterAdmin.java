package ai.punica.server;

import ai.punica.lora.AdapterManager;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * vLLM's runtime adapter endpoints ({@code /v1/load_lora_adapter}, {@code /v1/unload_lora_adapter}).
 *
 * <p>An HTTP client must not be able to make the server read arbitrary directories: an adapter is
 * loaded only from a directory whose real path (symbolic links and {@code ..} resolved) lies inside
 * one of the configured adapter roots. With no roots configured, runtime loading is off.
 */
final class AdapterAdmin {
    private static final Logger log = LoggerFactory.getLogger(AdapterAdmin.class);
    /**
     * Names appear in URLs, logs and in the comma-separated labels of vllm:lora_requests_info, so
     * commas, quotes and whitespace are kept out.
     */
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}");

    /** One per engine (several with --engines/--devices): an adapter is registered with all or none. */
    private final List<AdapterManager> engines;
    private final AdapterManager adapters;
    private final String baseModelName;
    private final List<Path> roots;
    private final List<Path> givenRoots;

    AdapterAdmin(List<AdapterManager> engines, String baseModelName, List<Path> roots) {
        this.engines = List.copyOf(engines);
        this.adapters = engines.getFirst();
        this.baseModelName = baseModelName;
        List<Path> real = new ArrayList<>();
        for (Path root : roots) {
            try {
                real.add(root.toRealPath());
            } catch (IOException e) {
                throw new IllegalArgumentException("adapter root " + root + " does not exist or cannot be read", e);
            }
        }
        this.roots = List.copyOf(real);
        this.givenRoots = roots.stream().map(r -> r.toAbsolutePath().normalize()).toList();
    }

    List<Path> roots() {
        return roots;
    }

    /** Returns vLLM's success message. */
    String load(OpenAiRequests.LoadLora body) {
        if (Boolean.TRUE.equals(body.loadInplace())) {
            throw ApiException.badRequest("load_inplace", "`load_inplace` is not supported by this server (got true); "
                    + "unload the adapter and load it again.");
        }
        String name = required(body.loraName(), "lora_name");
        String rawPath = required(body.loraPath(), "lora_path");
        if (!NAME.matcher(name).matches()) {
            throw ApiException.badRequest("lora_name", "Invalid adapter name \"" + name + "\": use 1 to 128 letters, "
                    + "digits and . _ - : / (starting with a letter or digit).");
        }
        if (name.equals(baseModelName)) {
            throw ApiException.badRequest("lora_name", "The name \"" + name + "\" is the base model's id; choose "
                    + "another name for the adapter.");
        }
        if (adapters.isRegistered(name)) {
            throw ApiException.badRequest("lora_name", "The lora adapter '" + name + "' has already been loaded.");
        }
        Path dir = resolveInsideRoots(rawPath);
        try {
            registerEverywhere(name, dir);
        } catch (IllegalArgumentException e) {
            // Also raced: registered by another request between the check above and here.
            throw ApiException.badRequest("lora_path", "Cannot load adapter '" + name + "': " + e.getMessage());
        } catch (RuntimeException e) {
            // ModelFormatException and friends: the files are not a valid adapter for this base model.
            throw ApiException.badRequest("lora_path", "Cannot load adapter '" + name + "' from " + rawPath + ": "
                    + e.getMessage());
        }
        log.info("loaded adapter {} from {}", name, dir);
        return "Success: LoRA adapter '" + name + "' added successfully.";
    }

    String unload(OpenAiRequests.UnloadLora body) {
        String name = required(body.loraName(), "lora_name");
        boolean known = false;
        for (AdapterManager engine : engines) {
            known |= engine.unregister(name);
        }
        if (!known) {
            throw ApiException.notFound("lora_name", "adapter_not_found",
                    "The lora adapter '" + name + "' cannot be found.");
        }
        log.info("unloaded adapter {}", name);
        return "Success: LoRA adapter '" + name + "' removed successfully.";
    }

    private void registerEverywhere(String name, Path dir) {
        List<AdapterManager> done = new ArrayList<>();
        try {
            for (AdapterManager engine : engines) {
                engine.register(name, dir);
                done.add(engine);
            }
        } catch (RuntimeException e) {
            done.forEach(engine -> engine.unregister(name));
            throw e;
        }
    }

    private static String required(String value, String param) {
        if (value == null) {
            throw ApiException.badRequest(param, "`" + param + "` is required.");
        }
        return value;
    }

    /**
     * The adapter directory a request names: absolute, or relative to a root (tried in order). Its
     * real path must be inside a root; anything else is refused without saying what exists outside.
     */
    private Path resolveInsideRoots(String rawPath) {
        if (roots.isEmpty()) {
            throw ApiException.badRequest("lora_path", "Loading adapters at runtime is disabled: start the server "
                    + "with --adapter-root DIR to allow loading adapters from under DIR.");
        }
        Path requested;
        try {
            requested = Path.of(rawPath);
        } catch (InvalidPathException e) {
            throw ApiException.badRequest("lora_path", "Invalid `lora_path` \"" + rawPath + "\": " + e.getReason());
        }
        List<Path> candidates = new ArrayList<>();
        if (requested.isAbsolute()) {
            candidates.add(requested);
        } else {
            for (Path root : roots) {
                candidates.add(root.resolve(requested));
            }
        }
        boolean escapes = false;
        for (Path candidate : candidates) {
            // Judge the path as written before touching the file system, so a request cannot learn
            // which paths exist outside the roots; then judge the real path (symbolic links).
            if (!insideRoot(candidate.toAbsolutePath().normalize())) {
                escapes = true;
                continue;
            }
            Path real;
            try {
                real = candidate.toRealPath();
            } catch (IOException e) {
                continue;
            }
            if (!insideRoot(real)) {
                throw outsideRoots(rawPath);
            }
            if (!Files.isDirectory(real)) {
                throw ApiException.badRequest("lora_path", "`lora_path` \"" + rawPath + "\" is not a directory; "
                        + "give the directory holding adapter_config.json and adapter_model.safetensors.");
            }
            return real;
        }
        if (escapes) {
            throw outsideRoots(rawPath);
        }
        throw ApiException.badRequest("lora_path", "`lora_path` \"" + rawPath + "\" does not exist under the adapter "
                + "roots (" + rootList() + ").");
    }

    private ApiException outsideRoots(String rawPath) {
        return ApiException.badRequest("lora_path", "`lora_path` \"" + rawPath + "\" is outside the adapter roots "
                + "this server may load from (" + rootList() + ").");
    }

    private boolean insideRoot(Path path) {
        for (int i = 0; i < roots.size(); i++) {
            for (Path root : List.of(roots.get(i), givenRoots.get(i))) {
                if (path.startsWith(root) && !path.equals(root)) {
                    return true;
                }
            }
        }
        return false;
    }

    private String rootList() {
        return String.join(", ", roots.stream().map(Path::toString).toList());
    }
}
