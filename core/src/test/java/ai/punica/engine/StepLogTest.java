package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

class StepLogTest {

    private static StepLog.StepRecord step(long n) {
        return new StepLog.StepRecord(n, 1_000 + n, 5_000, List.of(new StepLog.Segment("a", 1, 0, 1),
                new StepLog.Segment(null, 2, 7, 1)), 3, 3, 0, 2, 64);
    }

    @Test
    void readerGetsEachRecordOnceInOrder() {
        StepLog log = new StepLog(8, 4);
        log.append(step(1));
        log.append(step(2));
        StepLog.Batch first = log.since(0);
        assertThat(first.records()).extracting(StepLog.StepRecord::step).containsExactly(1L, 2L);
        assertThat(first.dropped()).isZero();
        log.append(step(3));
        StepLog.Batch second = log.since(first.next());
        assertThat(second.records()).extracting(StepLog.StepRecord::step).containsExactly(3L);
        assertThat(log.since(second.next()).records()).isEmpty();
        assertThat(step(1).rows()).isEqualTo(9);
    }

    @Test
    void aReaderFallenBehindTheRingIsToldHowManyItLost() {
        StepLog log = new StepLog(4, 4);
        for (int i = 1; i <= 10; i++) {
            log.append(step(i));
        }
        StepLog.Batch b = log.since(0);
        assertThat(b.records()).extracting(StepLog.StepRecord::step).containsExactly(7L, 8L, 9L, 10L);
        assertThat(b.dropped()).isEqualTo(6);
        assertThat(b.next()).isEqualTo(10);
    }

    @Test
    void concurrentReadersNeverSeeARecordOutOfPlace() throws Exception {
        StepLog log = new StepLog(16, 4);
        AtomicBoolean done = new AtomicBoolean();
        Thread writer = Thread.ofPlatform().start(() -> {
            for (int i = 1; i <= 200_000; i++) {
                log.append(step(i));
            }
            done.set(true);
        });
        long position = 0;
        long seen = 0;
        long dropped = 0;
        long lastStep = 0;
        while (!done.get() || position < log.position()) {
            StepLog.Batch b = log.since(position);
            for (StepLog.StepRecord r : b.records()) {
                assertThat(r.step()).isGreaterThan(lastStep);
                lastStep = r.step();
            }
            seen += b.records().size();
            dropped += b.dropped();
            position = b.next();
        }
        writer.join();
        assertThat(seen + dropped).isEqualTo(200_000);
        assertThat(lastStep).isEqualTo(200_000);
    }

    @Test
    void capacityMustBePositive() {
        assertThatThrownBy(() -> new StepLog(0, 4)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("capacity");
    }
}
