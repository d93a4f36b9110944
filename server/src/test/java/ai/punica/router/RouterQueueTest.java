package ai.punica.router;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** The router's queue: first in, first out while no engine has room; refusals beyond it, after its timeout, and when no engine is up. */
class RouterQueueTest {

    /** Room for {@code free} more requests: each placement takes one; {@link #free} gives one back. */
    private static final class Slots {
        final AtomicInteger free;

        Slots(int free) {
            this.free = new AtomicInteger(free);
        }

        String place(String who) {
            return free.getAndUpdate(n -> n > 0 ? n - 1 : n) > 0 ? who : null;
        }
    }

    private static CompletableFuture<RouterQueue.Outcome<String>> admitLater(RouterQueue q, Slots slots, String who,
                                                                           List<String> order) {
        // A thread each: every waiter blocks in admit.
        return CompletableFuture.supplyAsync(() -> {
            try {
                RouterQueue.Outcome<String> o = q.admit(() -> slots.place(who), () -> false);
                if (o.placed() != null) {
                    order.add(o.placed());
                }
                return o;
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        }, r -> Thread.ofPlatform().daemon(true).start(r));
    }

    private static void awaitLength(RouterQueue q, int n) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (q.length() != n && System.nanoTime() < end) {
            Thread.sleep(1);
        }
        assertThat(q.length()).isEqualTo(n);
    }

    @Test
    void waitingRequestsArePlacedInArrivalOrderAndRefusedBeyondTheCapacity() throws Exception {
        RouterQueue q = new RouterQueue(2, Duration.ofSeconds(30));
        Slots slots = new Slots(1);
        List<String> order = new CopyOnWriteArrayList<>();
        assertThat(admitLater(q, slots, "a", order).get(10, TimeUnit.SECONDS).placed()).isEqualTo("a");
        var b = admitLater(q, slots, "b", order);
        awaitLength(q, 1);
        var c = admitLater(q, slots, "c", order);
        awaitLength(q, 2);
        RouterQueue.Outcome<String> d = q.admit(() -> slots.place("d"), () -> false);
        assertThat(d.refusal()).isEqualTo(RouterQueue.Refusal.FULL);
        assertThat(q.refusedFull()).isEqualTo(1);
        slots.free.incrementAndGet(); // one request ended: the head goes, not the one behind it
        q.wake();
        assertThat(b.get(10, TimeUnit.SECONDS).placed()).isEqualTo("b");
        assertThat(c).isNotDone();
        slots.free.incrementAndGet();
        q.wake();
        assertThat(c.get(10, TimeUnit.SECONDS).placed()).isEqualTo("c");
        assertThat(order).containsExactly("a", "b", "c");
        assertThat(q.length()).isZero();
        assertThat(q.queued()).isEqualTo(2);
    }

    @Test
    void aRequestThatWaitsTooLongOrHasNoEngineLeftIsRefused() throws Exception {
        RouterQueue q = new RouterQueue(4, Duration.ofMillis(100));
        Slots none = new Slots(0);
        assertThat(q.admit(() -> none.place("x"), () -> false).refusal()).isEqualTo(RouterQueue.Refusal.TIMEOUT);
        assertThat(q.refusedTimeout()).isEqualTo(1);
        RouterQueue patient = new RouterQueue(4, Duration.ofSeconds(30));
        assertThat(patient.admit(() -> none.place("y"), () -> true).refusal())
                .isEqualTo(RouterQueue.Refusal.NO_ENGINE);
        assertThat(patient.length()).isZero();
        RouterQueue noQueue = new RouterQueue(0, Duration.ofSeconds(30));
        assertThat(noQueue.admit(() -> none.place("z"), () -> false).refusal()).isEqualTo(RouterQueue.Refusal.FULL);
        assertThatThrownBy(() -> new RouterQueue(-1, Duration.ZERO))
                .hasMessage("the router's queue capacity must not be negative, got -1");
    }
}
