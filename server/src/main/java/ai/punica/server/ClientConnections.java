package ai.punica.server;

import io.helidon.common.buffers.BufferData;
import io.helidon.common.buffers.DataReader;
import io.helidon.common.concurrency.limits.Limit;
import io.helidon.webserver.ConnectionContext;
import io.helidon.webserver.ListenerContext;
import io.helidon.webserver.Router;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http1.Http1Config;
import io.helidon.webserver.http1.Http1ConnectionSelector;
import io.helidon.webserver.spi.ServerConnection;
import io.helidon.webserver.spi.ServerConnectionSelector;
import io.helidon.common.buffers.DataWriter;
import io.helidon.common.socket.HelidonSocket;
import io.helidon.common.socket.PeerInfo;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Semaphore;

/**
 * The listener's HTTP/1 connections, each a {@link ClientConnection}: Helidon's HTTP/1.1 parser reads
 * through it, and the routes find the connection of a request here (to cancel work when its client
 * leaves, and to close after {@code Connection: close}).
 *
 * <p>HTTP/1.0 requests (nginx's default upstream protocol, ApacheBench) are accepted too: the request
 * line is read as HTTP/1.1, the Host header is not required, and the connection closes after the
 * response, which is what HTTP/1.0 without keep-alive means.
 */
final class ClientConnections implements ServerConnectionSelector {
    private static final byte[] HTTP10 = " HTTP/1.0\r".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] HTTP11 = " HTTP/1.1\r".getBytes(StandardCharsets.US_ASCII);

    private final ConnectionLimits limits;
    private final Http1ConnectionSelector http11 = Http1ConnectionSelector.builder()
            .config(Http1Config.create()).build();
    private final Http1ConnectionSelector http10 = Http1ConnectionSelector.builder()
            .config(Http1Config.builder().validateRequestHostHeader(false).build()).build();
    private final Map<String, ClientConnection> open = new ConcurrentHashMap<>();

    ClientConnections(ConnectionLimits limits) {
        this.limits = limits;
    }

    /** The connection a request arrived on; null if it came some other way. */
    ClientConnection of(ServerRequest req) {
        return open.get(req.serverSocketId() + "/" + req.socketId());
    }

    int openConnections() {
        return open.size();
    }

    @Override
    public int bytesToIdentifyConnection() {
        return http11.bytesToIdentifyConnection();
    }

    @Override
    public Support supports(BufferData request) {
        int eol = request.indexOf((byte) '\n');
        if (eol < 0) {
            return http11.supports(request);
        }
        return endsWith(request, eol, HTTP11) || endsWith(request, eol, HTTP10) ? Support.SUPPORTED
                : Support.UNSUPPORTED;
    }

    private static boolean endsWith(BufferData data, int eol, byte[] suffix) {
        if (eol < suffix.length) {
            return false;
        }
        for (int i = 0; i < suffix.length; i++) {
            if (data.get(eol - suffix.length + i) != suffix[i]) {
                return false;
            }
        }
        return true;
    }

    @Override
    public Set<String> supportedApplicationProtocols() {
        return http11.supportedApplicationProtocols();
    }

    @Override
    public ServerConnection connection(ConnectionContext ctx) {
        DataReader original = ctx.dataReader();
        byte[] received = original.readBytes(original.available());
        boolean isHttp10 = rewriteHttp10(received);
        PeerInfo remote = ctx.remotePeer();
        String peer = remote.host() + ":" + remote.port();
        ClientConnection client = new ClientConnection(ctx.serverSocket(), peer, received, isHttp10, limits);
        String key = ctx.socketId() + "/" + ctx.childSocketId();
        open.put(key, client);
        ServerConnection http = (isHttp10 ? http10 : http11).connection(new ReadThrough(ctx, client.reader()));
        return new ServerConnection() {
            @Override
            public void handle(Limit limit) throws InterruptedException {
                try {
                    http.handle(limit);
                } finally {
                    open.remove(key);
                    client.finish();
                }
            }

            @Override
            public void handle(Semaphore requestSemaphore) throws InterruptedException {
                try {
                    http.handle(requestSemaphore);
                } finally {
                    open.remove(key);
                    client.finish();
                }
            }

            @Override
            public Duration idleTime() {
                return http.idleTime();
            }

            @Override
            public void close(boolean interrupt) {
                http.close(interrupt);
            }
        };
    }

    /** Turns an HTTP/1.0 request line into HTTP/1.1 in place (same length); says whether it did. */
    private static boolean rewriteHttp10(byte[] received) {
        int eol = -1;
        for (int i = 0; i < received.length; i++) {
            if (received[i] == '\n') {
                eol = i;
                break;
            }
        }
        if (eol < HTTP10.length) {
            return false;
        }
        int start = eol - HTTP10.length;
        for (int i = 0; i < HTTP10.length; i++) {
            if (received[start + i] != HTTP10[i]) {
                return false;
            }
        }
        received[eol - 2] = '1'; // "HTTP/1.0\r" -> "HTTP/1.1\r"
        return true;
    }

    /** The listener's connection context, except that requests are read through a {@link ClientConnection}. */
    private record ReadThrough(ConnectionContext ctx, DataReader reader) implements ConnectionContext {
        @Override
        public ListenerContext listenerContext() {
            return ctx.listenerContext();
        }

        @Override
        public ExecutorService executor() {
            return ctx.executor();
        }

        @Override
        public DataWriter dataWriter() {
            return ctx.dataWriter();
        }

        @Override
        public DataReader dataReader() {
            return reader;
        }

        @Override
        public Router router() {
            return ctx.router();
        }

        @Override
        public java.util.Optional<io.helidon.webserver.ProxyProtocolData> proxyProtocolData() {
            return ctx.proxyProtocolData();
        }

        @Override
        public HelidonSocket serverSocket() {
            return ctx.serverSocket();
        }

        @Override
        public PeerInfo remotePeer() {
            return ctx.remotePeer();
        }

        @Override
        public PeerInfo localPeer() {
            return ctx.localPeer();
        }

        @Override
        public boolean isSecure() {
            return ctx.isSecure();
        }

        @Override
        public String socketId() {
            return ctx.socketId();
        }

        @Override
        public String childSocketId() {
            return ctx.childSocketId();
        }
    }
}
