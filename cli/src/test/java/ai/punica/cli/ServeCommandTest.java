package ai.punica.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code punica serve} refuses bad arguments with a message that says what to fix, before loading anything. */
class ServeCommandTest {

    private static Result run(String... args) {
        StringWriter err = new StringWriter();
        CommandLine cli = Main.commandLine();
        cli.setErr(new PrintWriter(err));
        int code = cli.execute(args);
        return new Result(code, err.toString());
    }

    private record Result(int exitCode, String stderr) {
    }

    @Test
    void aPortInUseExitsNonZeroWithOneLine() throws Exception {
        try (var taken = new java.net.ServerSocket(0, 50, java.net.InetAddress.getByName("127.0.0.1"))) {
            int port = taken.getLocalPort();
            var savedErr = System.err;
            var err = new java.io.ByteArrayOutputStream();
            int code;
            try {
                System.setErr(new java.io.PrintStream(err, true, java.nio.charset.StandardCharsets.UTF_8));
                Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
                code = Main.commandLine().execute("serve", "--backend", "cpu", "--port",
                        Integer.toString(port), "--model", fixtures.resolve("model").toString());
            } finally {
                System.setErr(savedErr);
            }
            assertThat(code).isEqualTo(1);
            // Said before the engine is built: nothing was loaded.
            assertThat(err.toString(java.nio.charset.StandardCharsets.UTF_8)).isEqualTo("punica serve: cannot listen "
                    + "on 127.0.0.1:" + port + ": the port is already in use (another server is running; stop it or "
                    + "pass another --port)" + System.lineSeparator());
        }
    }

    @Test
    void aWrongArgumentPrintsTheReasonAndAHintNotTheUsage() {
        Result r = run("serve", "--prot", "8000");
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).startsWith("punica serve: Unknown options: '--prot', '8000'")
                .contains("Try 'punica serve --help' for the options.");
        assertThat(r.stderr().lines().count()).isLessThanOrEqualTo(4);
    }

    @Test
    void aModelDirectoryWithoutConfigIsRefused(@TempDir Path empty) {
        Result r = run("serve", "--model", empty.toString());
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).contains("no model at " + empty).contains("config.json missing");
    }

    @Test
    void anAdapterDirectoryWithoutAdapterConfigIsRefused(@TempDir Path dir) throws Exception {
        Path model = Files.createDirectories(dir.resolve("model"));
        Files.writeString(model.resolve("config.json"), "{}");
        Path notAdapter = Files.createDirectories(dir.resolve("notes"));
        Result r = run("serve", "--model", model.toString(), "--adapters", "mine=" + notAdapter);
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).contains("--adapters mine=" + notAdapter).contains("no adapter_config.json");
    }

    @Test
    void twoAdaptersWithOneNameAreRefused(@TempDir Path dir) throws Exception {
        Path model = Files.createDirectories(dir.resolve("model"));
        Files.writeString(model.resolve("config.json"), "{}");
        for (String a : new String[] {"a/upper", "b/upper"}) {
            Files.createDirectories(dir.resolve(a));
            Files.writeString(dir.resolve(a).resolve("adapter_config.json"), "{}");
        }
        Result r = run("serve", "--model", model.toString(), "--adapters", dir.resolve("a/upper").toString(),
                dir.resolve("b/upper").toString());
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).contains("two adapters are named 'upper'");
    }

    @Test
    void aMemoryShareOutsideZeroToOneIsRefused() {
        Result r = run("serve", "--gpu-memory-utilization", "1.5");
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).contains("--gpu-memory-utilization 1.5 must be in (0, 1]");
    }

    @Test
    void anUnknownBackendIsRefusedNamingTheKnownOnes(@TempDir Path dir) throws Exception {
        Path model = Files.createDirectories(dir.resolve("model"));
        Files.writeString(model.resolve("config.json"), "{}");
        Result r = run("serve", "--model", model.toString(), "--backend", "tpu");
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).contains("unknown backend 'tpu'").contains("cpu").contains("reference");
    }

    @Test
    void clusterOptionsAreCheckedBeforeLoading(@TempDir Path dir) throws Exception {
        Path model = Files.createDirectories(dir.resolve("model"));
        Files.writeString(model.resolve("config.json"), "{}");
        String m = model.toString();
        Result devices = run("serve", "--model", m, "--backend", "cpu", "--devices", "0,1");
        assertThat(devices.exitCode()).isEqualTo(2);
        assertThat(devices.stderr()).contains("--devices 0,1: backend 'cpu' has no GPUs here; use --engines N");
        Result both = run("serve", "--model", m, "--engines", "2", "--devices", "all");
        assertThat(both.exitCode()).isEqualTo(2);
        assertThat(both.stderr()).contains("give --engines or --devices, not both");
        Result none = run("serve", "--model", m, "--engines", "0");
        assertThat(none.exitCode()).isEqualTo(2);
        assertThat(none.stderr()).contains("--engines 0 must be at least 1");
        Result policy = run("serve", "--model", m, "--placement", "busiest");
        assertThat(policy.exitCode()).isEqualTo(2);
        assertThat(policy.stderr()).contains("unknown placement policy 'busiest'; use one of consolidate, "
                + "least-loaded, round-robin");
        Result consolidate = run("serve", "--model", m, "--engines", "2", "--consolidate-below", "-1");
        assertThat(consolidate.exitCode()).isEqualTo(2);
        assertThat(consolidate.stderr()).contains("--consolidate-below -1 must not be negative (0 turns consolidation off)");
        Result queue = run("router", "--engine", "http://127.0.0.1:1", "--queue", "-1");
        assertThat(queue.exitCode()).isEqualTo(2);
        assertThat(queue.stderr()).contains("--queue -1 must not be negative");
    }

    @Test
    void anAdapterRootThatDoesNotExistAndAZeroAdapterCapAreRefused(@TempDir Path dir) throws Exception {
        Path model = Files.createDirectories(dir.resolve("model"));
        Files.writeString(model.resolve("config.json"), "{}");
        Result root = run("serve", "--model", model.toString(), "--backend", "cpu", "--adapter-root",
                dir.resolve("nope").toString());
        assertThat(root.exitCode()).isEqualTo(2);
        assertThat(root.stderr()).contains("--adapter-root: adapter root " + dir.resolve("nope") + " does not exist");
        Result cap = run("serve", "--model", model.toString(), "--backend", "cpu", "--max-loras", "0");
        assertThat(cap.exitCode()).isEqualTo(2);
        assertThat(cap.stderr()).contains("--max-loras 0 must be at least 1");
    }

    @Test
    void aTensorParallelSizeThatDoesNotSplitTheHeadsIsRefusedInOneLine() {
        Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
        Result r = run("serve", "--backend", "cpu", "--model", fixtures.resolve("model").toString(),
                "--tensor-parallel", "3");
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).startsWith("punica serve: --tensor-parallel 3: tensor parallel size 3 does not divide "
                + "the model's 8 attention heads (num_attention_heads); use a divisor of 8");
    }

    @Test
    void badTensorParallelValuesAreRefused() {
        Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
        String model = fixtures.resolve("model").toString();
        Result zero = run("serve", "--backend", "cpu", "--model", model, "--tensor-parallel", "0");
        assertThat(zero.exitCode()).isEqualTo(2);
        assertThat(zero.stderr()).startsWith("punica serve: --tensor-parallel 0 must be at least 1");
        Result withEngines = run("serve", "--backend", "cpu", "--model", model, "--tensor-parallel", "2",
                "--engines", "2");
        assertThat(withEngines.exitCode()).isEqualTo(2);
        assertThat(withEngines.stderr()).startsWith("punica serve: --tensor-parallel 2 runs one engine over devices "
                + "0..1; it cannot be combined with --engines or --devices");
        Result kvHeads = run("serve", "--backend", "cpu", "--model", model, "--tensor-parallel", "16");
        assertThat(kvHeads.exitCode()).isEqualTo(2);
        assertThat(kvHeads.stderr()).contains("--tensor-parallel 16: tensor parallel size 16 does not divide the "
                + "model's 8 attention heads");
    }

    @Test
    void batchInvariantReachesTheEngineConfigAndIsOffByDefault() {
        CommandLine on = Main.commandLine();
        on.parseArgs("serve", "--backend", "cpu", "--batch-invariant");
        ServeCommand serve = on.getSubcommands().get("serve").getCommand();
        assertThat(serve.engineConfig().batchInvariant()).isTrue();
        CommandLine off = Main.commandLine();
        off.parseArgs("serve", "--backend", "cpu");
        ServeCommand plain = off.getSubcommands().get("serve").getCommand();
        assertThat(plain.engineConfig().batchInvariant()).isFalse();
    }

    @Test
    void batchInvariantWithTensorParallelismIsRefusedInOneLine() {
        Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
        Result r = run("serve", "--backend", "cpu", "--model", fixtures.resolve("model").toString(),
                "--tensor-parallel", "2", "--batch-invariant");
        assertThat(r.exitCode()).isEqualTo(2);
        assertThat(r.stderr()).startsWith("punica serve: --batch-invariant is not available with --tensor-parallel "
                + "yet (the ranks' all-reduce is not in a fixed order); drop one of them");
    }
}
