package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** Misses are answered from memory until they expire, and only so many are kept. */
class RecentMissesTest {

    @Test
    void aMissIsRememberedUntilItsTimeIsUp() {
        var misses = new RecentMisses(1_000, 8);
        misses.put("a", "no a", 0);
        assertThat(misses.get("a", 999)).isEqualTo("no a");
        assertThat(misses.get("a", 1_000)).isNull();
        assertThat(misses.size()).isZero();
    }

    @Test
    void theOldestMissesAreForgottenBeyondTheCapacity() {
        var misses = new RecentMisses(1_000_000, 3);
        for (int i = 0; i < 10; i++) {
            misses.put("n" + i, "miss " + i, i);
        }
        assertThat(misses.size()).isEqualTo(3);
        assertThat(misses.get("n6", 10)).isNull();
        assertThat(misses.get("n7", 10)).isEqualTo("miss 7");
        assertThat(misses.get("n9", 10)).isEqualTo("miss 9");
    }

    @Test
    void aRepeatedMissGetsAFreshExpiryAndForgetDropsIt() {
        var misses = new RecentMisses(100, 4);
        misses.put("a", "first", 0);
        misses.put("b", "b", 50);
        misses.put("a", "second", 90);
        assertThat(misses.get("a", 150)).isEqualTo("second");
        assertThat(misses.get("b", 150)).isNull();
        misses.forget("a");
        assertThat(misses.get("a", 151)).isNull();
    }
}
