package ai.punica.router;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * The router's bounded FIFO of requests for which no engine has room (docs/cluster.md): a request goes ahead at
 * once when nobody waits and an engine has room; otherwise it waits its turn, and the head of the queue is placed
 * as soon as an engine has room (a request ending, or a probe, wakes it; it also looks every 50 ms). Beyond
 * {@code capacity} waiting requests, or after {@code maxWait}, it is refused: the caller answers 429 with
 * Retry-After.
 */
final class RouterQueue {
    /** How a wait ended: an engine ({@code placed}), or the reason it was refused. */
    record Outcome<T>(T placed, Refusal refusal) {
    }

    enum Refusal {
        /** {@code capacity} requests were waiting already. */
        FULL("full"),
        /** It waited {@code maxWait} without an engine having room. */
        TIMEOUT("timeout"),
        /** No engine is up any more: waiting is pointless (503). */
        NO_ENGINE("no_engine");

        final String label;

        Refusal(String label) {
            this.label = label;
        }
    }

    private final int capacity;
    private final Duration maxWait;
    private final ReentrantLock lock = new ReentrantLock(true);
    private final Condition changed = lock.newCondition();
    private final ArrayDeque<Object> waiting = new ArrayDeque<>();
    private final AtomicLong queued = new AtomicLong();
    private final AtomicLong full = new AtomicLong();
    private final AtomicLong timeouts = new AtomicLong();

    RouterQueue(int capacity, Duration maxWait) {
        if (capacity < 0) {
            throw new IllegalArgumentException("the router's queue capacity must not be negative, got " + capacity);
        }
        if (maxWait.isNegative()) {
            throw new IllegalArgumentException("the router's queue wait must not be negative, got " + maxWait);
        }
        this.capacity = capacity;
        this.maxWait = maxWait;
    }

    /**
     * Places a request through {@code place} (an engine with room, or null), in arrival order.
     *
     * @param hopeless true when no engine is up at all: a waiting request then leaves with NO_ENGINE
     */
    <T> Outcome<T> admit(Supplier<T> place, BooleanSupplier hopeless) throws InterruptedException {
        Object ticket = new Object();
        lock.lock();
        try {
            if (waiting.isEmpty()) {
                T t = place.get();
                if (t != null) {
                    return new Outcome<>(t, null);
                }
            }
            if (waiting.size() >= capacity) {
                full.incrementAndGet();
                return new Outcome<>(null, Refusal.FULL);
            }
            waiting.addLast(ticket);
            queued.incrementAndGet();
            long deadline = System.nanoTime() + maxWait.toNanos();
            try {
                while (true) {
                    if (waiting.peekFirst() == ticket) {
                        T t = place.get();
                        if (t != null) {
                            return new Outcome<>(t, null);
                        }
                    }
                    if (hopeless.getAsBoolean()) {
                        return new Outcome<>(null, Refusal.NO_ENGINE);
                    }
                    long left = deadline - System.nanoTime();
                    if (left <= 0) {
                        timeouts.incrementAndGet();
                        return new Outcome<>(null, Refusal.TIMEOUT);
                    }
                    changed.await(Math.min(left, TimeUnit.MILLISECONDS.toNanos(50)), TimeUnit.NANOSECONDS);
                }
            } finally {
                waiting.remove(ticket);
                changed.signalAll(); // the next one may be at the head now
            }
        } finally {
            lock.unlock();
        }
    }

    /** Something changed (a request ended, a probe read new loads): the head looks again. */
    void wake() {
        if (lock.tryLock()) {
            try {
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }
    }

    int length() {
        lock.lock();
        try {
            return waiting.size();
        } finally {
            lock.unlock();
        }
    }

    int capacity() {
        return capacity;
    }

    /** Requests that had to wait. */
    long queued() {
        return queued.get();
    }

    long refusedFull() {
        return full.get();
    }

    long refusedTimeout() {
        return timeouts.get();
    }
}
