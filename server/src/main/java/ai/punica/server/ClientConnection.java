package ai.punica.server;

import io.helidon.common.buffers.DataReader;
import io.helidon.common.socket.HelidonSocket;
import java.io.UncheckedIOException;
import java.net.SocketTimeoutException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One client's TCP connection, read by a pump thread of its own rather than by the HTTP parser:
 *
 * <pre>
 *   socket ── pump (virtual thread, always reading) ──► chunks (bounded) ──► reader() ──► Helidon's HTTP/1 parser
 *                │ end of stream / reset
 *                └──► whenGone callbacks (cancel the request being generated)
 * </pre>
 *
 * <p>Because the pump is always waiting on the socket, a client that leaves is noticed at once, whether
 * or not the server is writing to it (uvicorn learns it the same way, from the event loop). The reader
 * side enforces the connection's time limits: the rest of a request must arrive within the request
 * read timeout of its first byte, and an idle keep-alive connection is closed after the keep-alive
 * timeout; either ends the connection with one log line.
 */
final class ClientConnection {
    private static final Logger log = LoggerFactory.getLogger(ClientConnection.class);
    private static final byte[] END = new byte[0];

    /** Where the connection is in its request/response cycle; decides which time limit applies. */
    private enum Phase { READING, HANDLING, IDLE }

    private final HelidonSocket socket;
    private final String peer;
    private final ConnectionLimits limits;
    private final ArrayBlockingQueue<byte[]> chunks = new ArrayBlockingQueue<>(16);
    private final List<Runnable> onGone = new ArrayList<>();
    private final DataReader reader;
    private byte[] first;
    private volatile Phase phase = Phase.READING;
    private volatile long deadlineNanos;
    private volatile boolean closeAfterResponse;
    private volatile boolean finished;
    private boolean gone;

    /**
     * @param received the bytes the listener already read to choose the protocol (a request's start)
     * @param http10   the request line said HTTP/1.0: the connection closes after one response
     */
    ClientConnection(HelidonSocket socket, String peer, byte[] received, boolean http10, ConnectionLimits limits) {
        this.socket = socket;
        this.peer = peer;
        this.limits = limits;
        this.first = received;
        this.closeAfterResponse = http10;
        this.deadlineNanos = System.nanoTime() + limits.requestReadTimeout().toNanos();
        this.reader = DataReader.create(this::next);
        Thread.ofVirtual().name("punica-conn-" + peer).start(this::pump);
    }

    /** What the HTTP parser reads: the socket's bytes, within this connection's time limits. */
    DataReader reader() {
        return reader;
    }

    /**
     * Runs {@code callback} once if the client closes the connection while the returned handle is
     * open (at once if it already has). Closing the handle deregisters it.
     */
    AutoCloseable whenGone(Runnable callback) {
        synchronized (onGone) {
            if (gone) {
                callback.run();
                return () -> { };
            }
            onGone.add(callback);
        }
        return () -> {
            synchronized (onGone) {
                onGone.remove(callback);
            }
        };
    }

    boolean isGone() {
        synchronized (onGone) {
            return gone;
        }
    }

    /** HTTP/1.0, or a {@code Connection: close} already seen: the connection ends after this response. */
    boolean closesAfterResponse() {
        return closeAfterResponse;
    }

    /** The routing layer has the request's headers. The body, if any, is still bound by the request's deadline. */
    void requestStarted() {
        phase = Phase.HANDLING;
    }

    /** The response is complete: the connection waits for the next request, or ends if asked to close. */
    void responseDone(boolean close) {
        closeAfterResponse |= close;
        deadlineNanos = System.nanoTime() + limits.keepAliveTimeout().toNanos();
        phase = Phase.IDLE;
    }

    /** Helidon is done with the connection (it closes the socket); the pump ends with it. */
    void finish() {
        finished = true;
    }

    private void pump() {
        try {
            while (!finished) {
                byte[] bytes;
                try {
                    bytes = socket.get();
                } catch (UncheckedIOException e) {
                    if (e.getCause() instanceof SocketTimeoutException) {
                        continue; // a socket read timeout; the time limits are enforced by next()
                    }
                    break; // reset by the peer, or closed by the server
                }
                if (bytes == null) {
                    break; // end of stream: the client closed its side
                }
                chunks.put(bytes);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            log.debug("{}: connection read failed: {}", peer, e.toString());
        } finally {
            gone();
            chunks.offer(END);
        }
    }

    private void gone() {
        List<Runnable> callbacks;
        synchronized (onGone) {
            gone = true;
            callbacks = List.copyOf(onGone);
            onGone.clear();
        }
        for (Runnable r : callbacks) {
            r.run();
        }
    }

    /** The supplier behind {@link #reader()}: null tells the parser that the connection has ended. */
    private byte[] next() {
        if (first != null) {
            byte[] b = first;
            first = null;
            return b;
        }
        if (closeAfterResponse && phase == Phase.IDLE) {
            return null; // Connection: close (or HTTP/1.0): no further request is read
        }
        byte[] bytes;
        try {
            bytes = chunks.poll(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
        if (bytes == null) {
            timedOut();
            return null;
        }
        if (bytes == END) {
            chunks.offer(END); // later reads see the end too
            return null;
        }
        if (phase == Phase.IDLE) {
            phase = Phase.READING;
            deadlineNanos = System.nanoTime() + limits.requestReadTimeout().toNanos();
        }
        return bytes;
    }

    private void timedOut() {
        if (phase == Phase.IDLE) {
            log.debug("{}: idle keep-alive connection closed after {} s", peer, limits.keepAliveTimeout().toSeconds());
        } else {
            log.info("{}: connection closed: the request did not arrive in full within {} s "
                    + "(--request-read-timeout)", peer, limits.requestReadTimeout().toSeconds());
        }
        finished = true;
        socket.close();
    }
}
