package ai.punica.cli;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A {@code punica serve} on the CPU backend in a JVM of its own (this test JVM's class path, the demo model from the
 * repository's fixtures/, an ephemeral port), for the tests that need engines as separate processes: the router's,
 * and tensor parallelism against an unsharded server. Its standard error goes to {@link #log}.
 */
record ServeProcess(Process process, Path log) {
    private static final Pattern SERVING = Pattern.compile("at (http://127\\.0\\.0\\.1:\\d+)/v1");

    /**
     * Starts {@code punica serve --backend cpu --port 0 <serveArgs>} with {@code jvmFlags} besides the usual ones.
     */
    static ServeProcess start(List<String> jvmFlags, String... serveArgs) throws IOException {
        Path log = Files.createTempFile("punica-serve-", ".log");
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java")
                .toString(), "--add-modules", "jdk.incubator.vector", "-Xmx384m", "-Dpunica.home=" + repoRoot()));
        command.addAll(jvmFlags);
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), "ai.punica.cli.Main", "serve",
                "--backend", "cpu", "--port", "0"));
        command.addAll(List.of(serveArgs));
        return new ServeProcess(new ProcessBuilder(command).redirectError(log.toFile()).start(), log);
    }

    /** The server's base URL once it says it serves, read on another thread; fails with its log if it ends first. */
    CompletableFuture<URI> url() {
        return CompletableFuture.supplyAsync(() -> {
            try {
                var out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
                String line;
                while ((line = out.readLine()) != null) {
                    Matcher m = SERVING.matcher(line);
                    if (m.find()) {
                        return URI.create(m.group(1));
                    }
                }
                throw new IllegalStateException("punica serve ended without serving: " + Files.readString(log));
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** The repository's root: the first folder up from the working directory that holds fixtures/. */
    static Path repoRoot() {
        Path root = Path.of("").toAbsolutePath();
        while (!Files.isDirectory(root.resolve("fixtures"))) {
            root = root.getParent();
        }
        return root;
    }
}
