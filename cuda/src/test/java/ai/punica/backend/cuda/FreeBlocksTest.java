package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The free lists of the device allocator and the pinned host blocks (CPU: no device needed). */
class FreeBlocksTest {
    @Test
    void aBlockIsTakenAgainOnlyForItsExactSizeTheLastFreedFirst() {
        FreeBlocks<Long> free = new FreeBlocks<>();
        assertThat(free.take(256)).isNull();
        free.put(256, 0x1000L);
        free.put(512, 0x2000L);
        free.put(256, 0x3000L);
        assertThat(free.bytes()).isEqualTo(1024);

        assertThat(free.take(768)).as("no block of that size").isNull();
        assertThat(free.take(256)).isEqualTo(0x3000L);
        assertThat(free.take(256)).isEqualTo(0x1000L);
        assertThat(free.take(256)).isNull();
        assertThat(free.bytes()).isEqualTo(512);
        assertThat(free.reused()).isEqualTo(2);
    }

    @Test
    void drainHandsOverEveryKeptBlockAndForgetsThem() {
        FreeBlocks<String> free = new FreeBlocks<>();
        free.put(1, "a");
        free.put(2, "b");
        free.put(2, "c");
        assertThat(free.take(1)).isEqualTo("a");

        List<String> freed = new ArrayList<>();
        free.drain(freed::add);
        assertThat(freed).containsExactlyInAnyOrder("b", "c");
        assertThat(free.bytes()).isZero();
        assertThat(free.take(2)).isNull();
        assertThat(free.reused()).as("drained blocks are not reuse").isEqualTo(1);

        freed.clear();
        free.drain(freed::add);
        assertThat(freed).isEmpty();
    }
}
