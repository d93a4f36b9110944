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
        CommandLine cli = new CommandLine(new Main());
        cli.setErr(new PrintWriter(err));
        int code = cli.execute(args);
        return new Result(code, err.toString());
    }

    private record Result(int exitCode, String stderr) {
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
    }
}
