package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Names resolve to directories under the root, nested ones included, and never to anything outside it. */
class DirectoryAdapterSourceTest {

    @TempDir
    Path tmp;

    private static void copyAdapter(Path to) throws IOException {
        Files.createDirectories(to);
        for (String f : new String[] {LoraAdapter.CONFIG_FILE, LoraAdapter.WEIGHTS_FILE}) {
            Files.copy(Fixtures.adapter("upper").resolve(f), to.resolve(f));
        }
    }

    @Test
    void plainAndNestedNamesResolveUnderTheRoot() throws IOException {
        Path root = Files.createDirectories(tmp.resolve("root"));
        copyAdapter(root.resolve("shout"));
        copyAdapter(root.resolve("acme/shout-v2"));
        var source = new DirectoryAdapterSource(root);

        assertThat(source.locate("shout")).contains(root.resolve("shout").toRealPath());
        assertThat(source.locate("acme/shout-v2")).contains(root.resolve("acme/shout-v2").toRealPath());
        assertThat(source.locate("acme")).as("a directory without adapter_config.json").isEmpty();
        assertThat(source.locate("absent")).isEmpty();
    }

    @Test
    void namesThatCouldLeaveTheRootAreMissingWithoutLookingOutside() throws IOException {
        Path root = Files.createDirectories(tmp.resolve("root"));
        Path outside = tmp.resolve("outside/secret");
        copyAdapter(outside);
        copyAdapter(root.resolve(".hidden"));
        Files.createSymbolicLink(root.resolve("link-out"), outside);
        var source = new DirectoryAdapterSource(root);

        for (String name : new String[] {"../outside/secret", "a/../../outside/secret", outside.toString(), "/etc",
                ".hidden", "a//b", "a/", "a/./b", "link-out", "", " shout", "a:b", "a\\b", "x".repeat(300),
                "a/b/c/d/e"}) {
            assertThat(source.locate(name)).as("name \"%s\"", name).isEmpty();
        }
        assertThat(DirectoryAdapterSource.isSafeName("org/name-1.2_x")).isTrue();
    }

    @Test
    void aRootThatDoesNotExistIsRefusedUpFront() {
        assertThatThrownBy(() -> new DirectoryAdapterSource(tmp.resolve("nope")))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("nope");
    }

    @Test
    void adaptersInListsTheAdapterDirectoriesDirectlyUnderTheRootByName() throws IOException {
        Path root = Files.createDirectories(tmp.resolve("root"));
        copyAdapter(root.resolve("zeta"));
        copyAdapter(root.resolve("alpha"));
        copyAdapter(root.resolve("acme/nested"));
        Files.createDirectories(root.resolve("empty"));
        Files.writeString(root.resolve("notes.txt"), "not an adapter");

        assertThat(DirectoryAdapterSource.adaptersIn(root)).as("only direct subdirectories with adapter_config.json")
                .containsExactly(Map.entry("alpha", root.resolve("alpha")), Map.entry("zeta", root.resolve("zeta")));
        assertThat(DirectoryAdapterSource.adaptersIn(tmp.resolve("nope"))).as("a root that does not exist").isEmpty();
        assertThat(DirectoryAdapterSource.adaptersIn(root.resolve("notes.txt"))).as("a file as the root").isEmpty();
    }
}
