package ai.punica.server;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** Plain HTTP against the server, to check bytes on the wire rather than what an SDK makes of them. */
final class Http {
    private final String base;
    private final String key;
    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(5)).build();

    Http(PunicaServer server, String key) {
        this.base = server.baseUrl();
        this.key = key;
    }

    record Response(int status, String contentType, byte[] bytes) {
        String body() {
            return new String(bytes, StandardCharsets.UTF_8);
        }
    }

    Response post(String path, String json) {
        return post(path, json.getBytes(StandardCharsets.UTF_8));
    }

    Response post(String path, byte[] body) {
        return send(request(path).POST(HttpRequest.BodyPublishers.ofByteArray(body))
                .header("Content-Type", "application/json"));
    }

    Response get(String path) {
        return send(request(path).GET());
    }

    HttpRequest.Builder request(String path) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(120));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return b;
    }

    /** The whole response, headers included. */
    HttpResponse<byte[]> sendWithHeaders(HttpRequest.Builder request) {
        try {
            return client.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    Response send(HttpRequest.Builder request) {
        try {
            HttpResponse<byte[]> r = client.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
            return new Response(r.statusCode(), r.headers().firstValue("content-type").orElse(""), r.body());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    /**
     * The {@code data:} payloads of an SSE body, in order, checking the framing on the way. Comment
     * frames ({@code : keep-alive}, sent when the engine is silent for long) are skipped, as clients do.
     */
    static List<String> sseData(String body) {
        if (!body.endsWith("\n\n")) {
            throw new AssertionError("SSE body does not end with a blank line: " + body);
        }
        List<String> out = new ArrayList<>();
        for (String frame : body.substring(0, body.length() - 2).split("\n\n", -1)) {
            if (frame.startsWith(": ") && !frame.contains("\n")) {
                continue;
            }
            if (!frame.startsWith("data: ") || frame.contains("\n")) {
                throw new AssertionError("not a single-line data frame: [" + frame + "]");
            }
            out.add(frame.substring(6));
        }
        return out;
    }

    /**
     * Opens a raw connection, sends a streaming POST, reads until the first complete SSE frame of
     * the body, and returns the still-open socket (the caller closes it to disconnect mid-stream).
     */
    static Socket openStreamAndReadFirstFrame(PunicaServer server, String path, String json) throws IOException {
        Socket socket = new Socket("127.0.0.1", server.port());
        socket.setSoTimeout(60_000);
        byte[] body = json.getBytes(StandardCharsets.UTF_8);
        OutputStream out = socket.getOutputStream();
        out.write(("POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        out.write(body);
        out.flush();
        InputStream in = socket.getInputStream();
        ByteArrayOutputStream seen = new ByteArrayOutputStream();
        while (true) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("connection closed before the first frame: " + seen);
            }
            seen.write(b);
            String s = seen.toString(StandardCharsets.UTF_8);
            int headerEnd = s.indexOf("\r\n\r\n");
            if (headerEnd >= 0 && s.indexOf("\n\n", headerEnd + 4) >= 0) {
                if (!s.startsWith("HTTP/1.1 200")) {
                    throw new IOException("expected 200, got " + s);
                }
                return socket;
            }
        }
    }

    /** Sends raw bytes as one request and returns the whole raw response (the server closes or we time out). */
    static String raw(PunicaServer server, byte[] request) throws IOException {
        try (Socket socket = new Socket("127.0.0.1", server.port())) {
            socket.setSoTimeout(10_000);
            socket.getOutputStream().write(request);
            socket.getOutputStream().flush();
            socket.shutdownOutput();
            return new String(socket.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        }
    }
}
