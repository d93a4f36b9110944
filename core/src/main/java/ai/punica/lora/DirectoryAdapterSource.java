package ai.punica.lora;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Adapters as directories under one root: the adapter {@code NAME} is {@code ROOT/NAME/adapter_config.json}
 * (plus its weights). Nested names such as {@code org/name} are directories below the root.
 *
 * <p>Confinement is as strict as {@code /v1/load_lora_adapter}'s: a name is judged as text before the file
 * system is touched (1 to 4 segments of letters, digits and {@code . _ -}, each starting with a letter or
 * digit, so no {@code ..}, no hidden directory, no absolute path), and the directory's real path (every
 * symbolic link resolved) must still lie inside the root's real path. A name that fails either test is
 * answered as missing, so a client cannot learn what exists outside the root.
 */
public final class DirectoryAdapterSource implements AdapterSource {

    /** Segments joined by '/': what a Hugging Face repo id ("org/name") looks like, and nothing more. */
    private static final Pattern NAME = Pattern.compile(
            "[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95}){0,3}");
    /** Longest name looked up; longer ones are answered as missing without a file-system call. */
    static final int MAX_NAME_LENGTH = 200;

    private final Path root;
    private final Path realRoot;

    /** @throws IllegalArgumentException if {@code root} is not a readable directory */
    public DirectoryAdapterSource(Path root) {
        this.root = root.toAbsolutePath().normalize();
        try {
            this.realRoot = root.toRealPath();
        } catch (IOException e) {
            throw new IllegalArgumentException("adapter root " + root + " does not exist or cannot be read: " + e);
        }
        if (!Files.isDirectory(realRoot)) {
            throw new IllegalArgumentException("adapter root " + root + " is not a directory");
        }
    }

    /**
     * The adapters directly under {@code root}, by name: each subdirectory holding {@code adapter_config.json},
     * named after the directory, in name order. A root that is not a directory holds none. The CLI and the
     * benches register a directory of adapters this way; nothing is confined or loaded here.
     *
     * @throws UncheckedIOException when the directory cannot be listed
     */
    public static Map<String, Path> adaptersIn(Path root) {
        Map<String, Path> out = new TreeMap<>();
        if (!Files.isDirectory(root)) {
            return out;
        }
        try (Stream<Path> dirs = Files.list(root)) {
            dirs.filter(d -> Files.isRegularFile(d.resolve(LoraAdapter.CONFIG_FILE)))
                    .forEach(d -> out.put(d.getFileName().toString(), d));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list adapters under " + root, e);
        }
        return out;
    }

    /** Whether {@code name} has the shape of a name this source may look up (checked without any file access). */
    public static boolean isSafeName(String name) {
        return name != null && name.length() <= MAX_NAME_LENGTH && NAME.matcher(name).matches();
    }

    @Override
    public Optional<Path> locate(String name) {
        if (!isSafeName(name)) {
            return Optional.empty();
        }
        Path candidate = realRoot.resolve(name).normalize();
        if (!candidate.startsWith(realRoot) || candidate.equals(realRoot)) {
            return Optional.empty(); // unreachable after the name check; kept as the rule itself
        }
        if (!Files.isRegularFile(candidate.resolve(LoraAdapter.CONFIG_FILE))) {
            return Optional.empty();
        }
        Path real;
        try {
            real = candidate.toRealPath();
        } catch (IOException e) {
            return Optional.empty(); // removed meanwhile
        }
        if (!real.startsWith(realRoot) || real.equals(realRoot)) {
            return Optional.empty(); // a symbolic link leads out of the root
        }
        if (!Files.isDirectory(real, LinkOption.NOFOLLOW_LINKS)) {
            return Optional.empty();
        }
        return Optional.of(real);
    }

    public Path root() {
        return root;
    }

    @Override
    public String describe() {
        return "directory " + root;
    }

    @Override
    public String toString() {
        return "DirectoryAdapterSource[" + root + "]";
    }
}
