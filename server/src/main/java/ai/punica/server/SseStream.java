package ai.punica.server;

import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.http.ServerResponse;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * A Server-Sent Events response as OpenAI streams it: {@code data: <json>\n\n} frames, each flushed
 * at once (a chunked HTTP/1.1 body), ending with {@code data: [DONE]\n\n}.
 *
 * <p>A write or flush that fails means the client has gone: it surfaces as {@link ClientGone} so
 * the caller cancels the engine work at once instead of generating into a dead socket.
 */
final class SseStream implements AutoCloseable {
    private static final byte[] DATA = "data: ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] END = "\n\n".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] DONE = "data: [DONE]\n\n".getBytes(StandardCharsets.US_ASCII);

    /** The client closed the connection while we were streaming to it. */
    static final class ClientGone extends Exception {
        ClientGone(Throwable cause) {
            super("client closed the connection: " + cause, cause);
        }

        ClientGone(String message) {
            super(message);
        }
    }

    private final ServerResponse response;
    private OutputStream out;

    /** Nothing is sent until the first frame: until then the request can still be answered with an error status. */
    SseStream(ServerResponse response) {
        this.response = response;
    }

    private OutputStream out() {
        if (out == null) {
            response.status(Status.OK_200);
            response.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
            response.header(HeaderNames.CACHE_CONTROL, "no-cache");
            // Reverse proxies (nginx) buffer responses unless told not to; a buffered stream is no stream.
            response.header("X-Accel-Buffering", "no");
            out = response.outputStream();
        }
        return out;
    }

    /**
     * Answers a request whose client left before its answer began (streamed or not): the answer goes nowhere, but
     * Helidon wants every request answered on its thread, else it logs an Internal Server Error.
     */
    static void answerClientGone(ServerResponse response) {
        response.status(Status.create(499, "Client Closed Request")).send();
    }

    /** Whether the response has begun (status and headers handed to Helidon with the first frame). */
    boolean started() {
        return out != null;
    }

    void data(Object json) throws ClientGone {
        byte[] body = OpenAiJson.bytes(json);
        send(DATA, body, END);
    }

    /**
     * One event of a comment line and, unless {@code json} is null, a data line, written and flushed at once:
     * a reader that sees the event whole sees both.
     */
    void event(String comment, Object json) throws ClientGone {
        send(frame(": " + comment, json));
    }

    /** A named event ({@code event: NAME} and one data line), for a router: OpenAI clients are never sent one. */
    void named(String event, Object json) throws ClientGone {
        send(frame("event: " + event, json));
    }

    /** An SSE comment line: ignored by clients, but a write that fails if the client is gone. */
    void comment(String text) throws ClientGone {
        send(frame(": " + text, null));
    }

    void done() throws ClientGone {
        send(DONE);
    }

    /** One event as one byte array: its first line, a data line unless {@code json} is null, the blank line. */
    private static byte[] frame(String firstLine, Object json) {
        var buf = new java.io.ByteArrayOutputStream();
        buf.writeBytes((firstLine + "\n").getBytes(StandardCharsets.UTF_8));
        if (json != null) {
            buf.writeBytes(DATA);
            buf.writeBytes(OpenAiJson.bytes(json));
            buf.write('\n');
        }
        buf.write('\n');
        return buf.toByteArray();
    }

    /** Writes the parts and flushes them; a failure means the client has gone. */
    private void send(byte[]... parts) throws ClientGone {
        try {
            OutputStream out = out();
            for (byte[] part : parts) {
                out.write(part);
            }
            out.flush();
        } catch (IOException | RuntimeException e) {
            throw new ClientGone(e);
        }
    }

    @Override
    public void close() {
        if (out == null) {
            return; // never started: the handler answered with an error status instead
        }
        try {
            out.close();
        } catch (IOException | RuntimeException e) {
            // The client is gone; nothing is left to tell it.
        }
    }
}
