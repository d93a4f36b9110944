package ai.punica.cli;

import ai.punica.cluster.PlacementPolicy;
import ai.punica.router.Router;
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code punica router}: one OpenAI-compatible endpoint over several {@code punica serve} processes, with
 * Punica's placement and fail-over of streams whose engine dies (docs/cluster.md).
 */
@Command(name = "router", mixinStandardHelpOptions = true,
        description = "Route requests over punica serve processes by Punica's consolidate policy; continue streams "
                + "of an engine that dies on another one.")
final class RouterCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--engine", paramLabel = "URL", description = "An engine server, http://HOST:PORT (repeatable).")
    List<String> engines = new ArrayList<>();

    @Option(names = "--engine-dns", paramLabel = "NAME:PORT", description = "Engines are the addresses NAME resolves "
            + "to (re-resolved at every probe): a Kubernetes headless Service.")
    String engineDns;

    @Option(names = "--placement", defaultValue = "consolidate", description = "consolidate, least-loaded or "
            + "round-robin (default: ${DEFAULT-VALUE}).")
    String placement;

    @Option(names = "--probe-interval-ms", defaultValue = "1000", description = "How often each engine's state "
            + "(GET /v1/engine/state) is read; it is also the health probe (default: ${DEFAULT-VALUE}).")
    long probeIntervalMs;

    @Option(names = "--queue", defaultValue = "256", description = "Requests held (first in, first out) while no "
            + "engine has room; beyond it, HTTP 429 with Retry-After (default: ${DEFAULT-VALUE}).")
    int queue;

    @Option(names = "--queue-timeout", defaultValue = "60", description = "Seconds a request may wait in that queue "
            + "before it is refused with 429 (default: ${DEFAULT-VALUE}).")
    long queueTimeoutSeconds;

    @Option(names = "--no-migration", description = "Do not move a stream whose engine preempts it for lack of KV "
            + "pages to another engine (it then waits on its engine); fail-over of dead engines stays on.")
    boolean noMigration;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8080", description = "Port (default: ${DEFAULT-VALUE}; 0 picks one).")
    int port;

    @Override
    public Integer call() throws Exception {
        List<URI> urls = new ArrayList<>();
        for (String e : engines) {
            try {
                urls.add(URI.create(e.endsWith("/") ? e.substring(0, e.length() - 1) : e));
            } catch (IllegalArgumentException ex) {
                throw new ParameterException(spec.commandLine(), "--engine " + e + " is not a URL");
            }
        }
        if (probeIntervalMs < 10) {
            throw new ParameterException(spec.commandLine(), "--probe-interval-ms " + probeIntervalMs
                    + " must be at least 10");
        }
        Router.Config config;
        try {
            config = new Router.Config(urls, engineDns, PlacementPolicy.named(placement),
                    Duration.ofMillis(probeIntervalMs), host, port, queue, Duration.ofSeconds(queueTimeoutSeconds),
                    !noMigration);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), e.getMessage());
        }
        try (Router router = new Router(config).start()) {
            String ready = "Punica-J router at http://" + host + ":" + router.port() + "/v1 over "
                    + (engineDns != null ? engineDns : String.join(", ", engines));
            StopSignals.announceAndAwait(ready, () -> { }); // the router closes as this block ends
        }
        return 0;
    }
}
