package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineStats;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.management.UnixOperatingSystemMXBean;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A bounded soak: {@code punica.soak.requests} requests (default 10,000) from 16 clients against the
 * CPU demo server, mixing adapters, whole and streamed answers, clients that leave mid-request, bad
 * inputs, and an adapter loaded and unloaded over and over. Every answer is checked against the
 * held-out eval sets; at the end the KV pages, running sequences, adapter use, threads, file
 * descriptors and heap must be back at their idle values. Run by scripts/soak (tagged "soak", so
 * ./scripts/test leaves it out); it prints its figures for docs/benchmarks/.
 */
@Tag("soak")
class SoakTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int CLIENTS = 16;
    private static final List<String> BAD_BODIES = List.of(
            "{\"model\":\"upper\",\"prompt\":",
            "{\"prompt\":\"x\",\"temperature\":\"hot\"}",
            "{\"model\":\"gpt-4\",\"prompt\":\"x\"}",
            "{\"prompt\":\"x\",\"n\":100000}",
            "{\"prompt\":[1,999999]}",
            "{\"prompt\":\"x\",\"max_tokens\":-1}",
            "[1,2]",
            "{\"prompt\":\"x\",\"logit_bias\":{\"5\":300}}");

    @TempDir
    Path adapterRoot;

    @Test
    void tenThousandMixedRequestsLoseNothingAndLeaveNothingBehind() throws Exception {
        int requests = Integer.getInteger("punica.soak.requests", 10_000);
        copyDir(Fixtures.adapter("upper"), adapterRoot.resolve("churn"));
        try (EngineBuilder.Runtime runtime = TestServers.engine()) {
            PunicaServer server = TestServers.start(runtime, b -> b.adapterRoot(adapterRoot));
            try {
                run(runtime, server, requests);
            } finally {
                server.stop(Duration.ofSeconds(5));
            }
        }
    }

    private void run(EngineBuilder.Runtime runtime, PunicaServer server, int requests) throws Exception {
        Map<String, List<EvalCase>> cases = new ConcurrentHashMap<>();
        for (String skill : TestServers.SKILLS) {
            cases.put(skill, TestServers.eval(skill, 20));
        }
        // One client (a pool of keep-alive connections) for all; warm up, then take the idle baseline.
        Http http = new Http(server, null);
        for (String skill : TestServers.SKILLS) {
            check(http, skill, cases.get(skill).getFirst(), false);
        }
        Idle before = Idle.measure(runtime);

        Queue<String> wrong = new ConcurrentLinkedQueue<>();
        Map<String, LongAdder> kinds = new ConcurrentHashMap<>();
        AtomicInteger next = new AtomicInteger();
        AtomicBoolean done = new AtomicBoolean();
        AtomicInteger churns = new AtomicInteger();
        long start = System.nanoTime();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            pool.submit(() -> churn(http, done, churns, wrong));
            for (int c = 0; c < CLIENTS; c++) {
                Random random = new Random(1000 + c);
                pool.submit(() -> {
                    for (int i = next.getAndIncrement(); i < requests; i = next.getAndIncrement()) {
                        String kind = oneRequest(http, server, random, cases, wrong);
                        kinds.computeIfAbsent(kind, k -> new LongAdder()).increment();
                    }
                    return null;
                });
            }
            while (next.get() < requests + CLIENTS) {
                Thread.sleep(50);
            }
            done.set(true);
        }
        double seconds = (System.nanoTime() - start) / 1e9;

        Idle after = Idle.settle(runtime, before);
        System.out.printf("soak: %d requests in %.1f s (%.1f/s), %d adapter load/unload cycles; by kind %s%n",
                requests, seconds, requests / seconds, churns.get(), kinds);
        System.out.printf("soak: idle before %s%nsoak: idle after  %s%n", before, after);
        assertThat(wrong).as("lost or wrong answers").isEmpty();
        assertThat(churns.get()).isPositive();
        assertThat(after.running()).isZero();
        assertThat(after.waiting()).isZero();
        assertThat(after.kvPagesUsed()).isZero();
        assertThat(after.adaptersInUse()).isZero();
        assertThat(after.threads()).as(Idle.serverThreads().toString()).isLessThanOrEqualTo(before.threads());
        assertThat(after.fds()).isLessThanOrEqualTo(before.fds());
        assertThat(after.heapMiB()).isLessThanOrEqualTo(before.heapMiB() + 64);
    }

    /** One request of a kind drawn at random; any answer that is not the expected one is recorded. */
    private static String oneRequest(Http http, PunicaServer server, Random random, Map<String, List<EvalCase>> cases,
                                     Queue<String> wrong) {
        int roll = random.nextInt(100);
        String skill = TestServers.SKILLS.get(random.nextInt(TestServers.SKILLS.size()));
        List<EvalCase> pool = cases.get(skill);
        EvalCase c = pool.get(random.nextInt(pool.size()));
        try {
            if (roll < 40) {
                check(http, skill, c, false);
                return "whole";
            } else if (roll < 70) {
                check(http, skill, c, true);
                return "stream";
            } else if (roll < 78) {
                leaveMidStream(server, skill, c);
                return "disconnect";
            } else if (roll < 88) {
                String body = BAD_BODIES.get(random.nextInt(BAD_BODIES.size()));
                Http.Response r = http.post("/v1/completions", body);
                if (r.status() < 400 || r.status() >= 500 || !r.body().contains("\"error\"")) {
                    wrong.add("bad input " + body + " -> " + r.status() + " " + r.body());
                }
                return "bad-input";
            } else {
                // The churning adapter: the upper skill while loaded, 404 model_not_found while not.
                EvalCase u = cases.get("upper").get(random.nextInt(cases.get("upper").size()));
                Http.Response r = http.post("/v1/completions", completion("churn", u, false));
                if (r.status() == 200) {
                    expect(wrong, "churn", u, JSON.readTree(r.bytes()).at("/choices/0/text").asText().trim());
                } else if (r.status() != 404 || !r.body().contains("model_not_found")) {
                    wrong.add("churn -> " + r.status() + " " + r.body());
                }
                return "churn";
            }
        } catch (Exception | AssertionError e) {
            wrong.add(skill + ": " + e);
            return "failed";
        }
    }

    private static String completion(String model, EvalCase c, boolean stream) throws IOException {
        return "{\"model\":" + JSON.writeValueAsString(model) + ",\"prompt\":" + JSON.writeValueAsString(c.prompt())
                + ",\"max_tokens\":32,\"temperature\":0,\"stream\":" + stream + "}";
    }

    private static void check(Http http, String skill, EvalCase c, boolean stream) throws IOException {
        Http.Response r = http.post("/v1/completions", completion(TestServers.modelFor(skill), c, stream));
        if (r.status() != 200) {
            throw new AssertionError("HTTP " + r.status() + ": " + r.body());
        }
        String text;
        if (stream) {
            StringBuilder sb = new StringBuilder();
            for (String data : Http.sseData(r.body())) {
                if (!data.equals("[DONE]")) {
                    sb.append(JSON.readTree(data).at("/choices/0/text").asText());
                }
            }
            text = sb.toString();
        } else {
            text = JSON.readTree(r.bytes()).at("/choices/0/text").asText();
        }
        if (!text.trim().equals(c.expected())) {
            throw new AssertionError(skill + " answered \"" + text.trim() + "\" for \"" + c.prompt() + "\", expected \""
                    + c.expected() + "\"");
        }
    }

    private static void expect(Queue<String> wrong, String what, EvalCase c, String got) {
        if (!got.equals(c.expected())) {
            wrong.add(what + ": \"" + got + "\", expected \"" + c.expected() + "\"");
        }
    }

    private static void leaveMidStream(PunicaServer server, String skill, EvalCase c) throws IOException {
        String body = "{\"model\":" + JSON.writeValueAsString(TestServers.modelFor(skill)) + ",\"prompt\":"
                + JSON.writeValueAsString(c.prompt()) + ",\"max_tokens\":200,\"ignore_eos\":true,\"stream\":true}";
        Socket s = Http.openStreamAndReadFirstFrame(server, "/v1/completions", body);
        s.close();
    }

    /** Loads and unloads the "churn" adapter while the clients run. */
    private static Void churn(Http http, AtomicBoolean done, AtomicInteger cycles, Queue<String> wrong)
            throws Exception {
        while (!done.get()) {
            Http.Response load = http.post("/v1/load_lora_adapter", "{\"lora_name\":\"churn\",\"lora_path\":\"churn\"}");
            Thread.sleep(150);
            Http.Response unload = http.post("/v1/unload_lora_adapter", "{\"lora_name\":\"churn\"}");
            if (load.status() != 200 || unload.status() != 200) {
                wrong.add("churn cycle: load " + load.status() + " " + load.body() + ", unload " + unload.status());
            }
            cycles.incrementAndGet();
            Thread.sleep(150);
        }
        return null;
    }

    /** What must come back to its idle value. */
    private record Idle(int running, int waiting, int kvPagesUsed, int adaptersInUse, int threads, long fds,
                        long heapMiB) {
        static Idle measure(EngineBuilder.Runtime runtime) {
            System.gc();
            EngineStats s = runtime.engine().stats();
            long fds = ManagementFactory.getOperatingSystemMXBean() instanceof UnixOperatingSystemMXBean u
                    ? u.getOpenFileDescriptorCount() : -1;
            long heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed() >> 20;
            return new Idle(s.running(), s.waiting(), s.kvPagesUsed(),
                    s.runningAdapters().size() + s.waitingAdapters().size(),
                    platformThreads(), fds, heap);
        }

        /**
         * The server's platform threads: not the fork-join workers (the virtual-thread scheduler's
         * carriers and the common pool grow under load and retire after a minute idle) nor the test
         * client's (the JDK HTTP client's pool, likewise).
         */
        static int platformThreads() {
            return serverThreads().size();
        }

        static List<String> serverThreads() {
            return Thread.getAllStackTraces().keySet().stream().map(Thread::getName)
                    .filter(n -> !n.startsWith("ForkJoinPool") && !n.startsWith("HttpClient-")).sorted().toList();
        }

        /** Measures until the values stop falling (connections and virtual threads wind down), at most 30 s. */
        static Idle settle(EngineBuilder.Runtime runtime, Idle baseline) throws InterruptedException {
            Idle now = measure(runtime);
            for (int i = 0; i < 60 && (now.running > 0 || now.kvPagesUsed > 0 || now.threads > baseline.threads
                    || now.fds > baseline.fds); i++) {
                Thread.sleep(500);
                now = measure(runtime);
            }
            return now;
        }
    }

    private static void copyDir(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (var files = Files.list(from)) {
            for (Path f : files.toList()) {
                Files.copy(f, to.resolve(f.getFileName()));
            }
        }
    }
}
