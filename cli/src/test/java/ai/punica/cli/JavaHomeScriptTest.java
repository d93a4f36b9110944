package ai.punica.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The launcher scripts on a machine without a JDK 25: they must stop with the message that says
 * what to install, not exit 1 in silence (they run under {@code set -euo pipefail}).
 */
class JavaHomeScriptTest {
    private static final Path ROOT = Path.of(System.getProperty("punica.repo.root", "..")).toAbsolutePath().normalize();

    @TempDir
    Path jvms;

    @ParameterizedTest
    @ValueSource(strings = {"punica", "scripts/test"})
    void withoutJdk25TheScriptSaysWhatToInstall(String script) throws Exception {
        // An old JDK is present (as on a stock distribution), a JAVA_HOME points nowhere.
        fakeJdk(jvms.resolve("jdk-17"), "17");
        var pb = new ProcessBuilder("bash", ROOT.resolve(script).toString(), "--help").redirectErrorStream(true);
        pb.environment().clear();
        pb.environment().putAll(Map.of("PATH", "/usr/bin:/bin", "JAVA_HOME", jvms.resolve("missing").toString(),
                "PUNICA_JVM_DIR", jvms.toString(), "HOME", jvms.toString()));
        Process p = pb.start();
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.exitValue()).isEqualTo(1);
        assertThat(out).contains("error: Punica-J needs a JDK 25 or newer.")
                .contains("no JDK 25+ was found under " + jvms)
                .contains("set JAVA_HOME");
    }

    /** A JDK directory whose java reports {@code feature} as its specification version. */
    private static void fakeJdk(Path home, String feature) throws IOException {
        Path bin = Files.createDirectories(home.resolve("bin"));
        String script = "#!/bin/sh\necho '    java.specification.version = " + feature + "' >&2\n";
        for (String tool : new String[] {"java", "javac"}) {
            Path f = bin.resolve(tool);
            Files.writeString(f, script);
            Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rwxr-xr-x"));
        }
    }
}
