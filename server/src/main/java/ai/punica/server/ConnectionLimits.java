package ai.punica.server;

import java.time.Duration;

/**
 * How long the server waits on a client and how many clients it holds.
 *
 * @param requestReadTimeout the rest of a request (headers and body) must arrive within this time of its
 *                           first byte; a stalled or half-sent request is dropped after it
 * @param keepAliveTimeout   an idle keep-alive connection is closed after this (vLLM/uvicorn: 5 s)
 * @param maxConnections     open connections at most; further ones wait in the listen backlog
 */
record ConnectionLimits(Duration requestReadTimeout, Duration keepAliveTimeout, int maxConnections) {
    static final ConnectionLimits DEFAULTS = new ConnectionLimits(Duration.ofSeconds(30), Duration.ofSeconds(5),
            10_000);

    ConnectionLimits {
        if (requestReadTimeout.isNegative() || requestReadTimeout.isZero()) {
            throw new IllegalArgumentException("request read timeout must be positive, got " + requestReadTimeout);
        }
        if (keepAliveTimeout.isNegative() || keepAliveTimeout.isZero()) {
            throw new IllegalArgumentException("keep-alive timeout must be positive, got " + keepAliveTimeout);
        }
        if (maxConnections < 1) {
            throw new IllegalArgumentException("max connections must be at least 1, got " + maxConnections);
        }
    }
}
