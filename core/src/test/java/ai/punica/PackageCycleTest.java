package ai.punica;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.spi.ToolProvider;
import org.junit.jupiter.api.Test;

/**
 * Core's packages depend on each other one way only. The dependencies are read from the compiled classes
 * by the JDK's jdeps, so a new import that closes a cycle fails here, naming the cycle.
 */
class PackageCycleTest {

    @Test
    void corePackagesHaveNoDependencyCycle() {
        Path classes = Path.of("target", "classes");
        assertThat(Files.isDirectory(classes)).as("compiled classes at " + classes.toAbsolutePath()).isTrue();
        Map<String, Set<String>> uses = packageDependencies(classes);
        assertThat(uses).as("packages found").containsKeys("ai.punica.backend", "ai.punica.engine", "ai.punica.model");
        List<String> cycle = findCycle(uses);
        assertThat(cycle).as("a package cycle").isEmpty();
    }

    /** ai.punica package → the other ai.punica packages its classes use. */
    private static Map<String, Set<String>> packageDependencies(Path classes) {
        ToolProvider jdeps = ToolProvider.findFirst("jdeps").orElseThrow();
        StringWriter out = new StringWriter();
        int status = jdeps.run(new PrintWriter(out), new PrintWriter(out), "-verbose:package", "-filter:none",
                classes.toString());
        assertThat(status).as("jdeps exit status; output:\n" + out).isZero();
        Map<String, Set<String>> uses = new TreeMap<>();
        for (String line : out.toString().split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length >= 3 && f[1].equals("->") && f[0].startsWith("ai.punica") && f[2].startsWith("ai.punica")) {
                Set<String> targets = uses.computeIfAbsent(f[0], k -> new TreeSet<>());
                if (!f[0].equals(f[2])) {
                    targets.add(f[2]);
                }
            }
        }
        return uses;
    }

    /** One cycle as its packages in order (first repeated last), or empty. */
    private static List<String> findCycle(Map<String, Set<String>> uses) {
        Set<String> done = new TreeSet<>();
        for (String start : uses.keySet()) {
            List<String> path = new ArrayList<>();
            List<String> cycle = visit(start, uses, path, done);
            if (!cycle.isEmpty()) {
                return cycle;
            }
        }
        return List.of();
    }

    private static List<String> visit(String p, Map<String, Set<String>> uses, List<String> path, Set<String> done) {
        int at = path.indexOf(p);
        if (at >= 0) {
            List<String> cycle = new ArrayList<>(path.subList(at, path.size()));
            cycle.add(p);
            return cycle;
        }
        if (done.contains(p)) {
            return List.of();
        }
        path.add(p);
        for (String q : uses.getOrDefault(p, Set.of())) {
            List<String> cycle = visit(q, uses, path, done);
            if (!cycle.isEmpty()) {
                return cycle;
            }
        }
        path.removeLast();
        done.add(p);
        return List.of();
    }
}
