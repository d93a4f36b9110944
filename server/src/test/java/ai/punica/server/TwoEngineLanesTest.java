package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.server.StatsStreamTest.Event;
import ai.punica.server.StatsStreamTest.Events;
import io.helidon.webserver.WebServer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The stream and the console with two engines: one lane each, every event naming its engine, and a
 * migration between them drawn as an arrow from one lane to the other. The engines run side by side in
 * this JVM behind the console's routes alone (the multi-engine server is not built yet).
 */
class TwoEngineLanesTest {
    private static final Duration WAIT = Duration.ofSeconds(30);
    private static EngineBuilder.Runtime first;
    private static EngineBuilder.Runtime second;
    private static LiveStats stats;
    private static ConsoleRoutes console;
    private static WebServer web;
    private static String baseUrl;

    @BeforeAll
    static void start() {
        first = TestServers.engine();
        second = TestServers.engine();
        stats = new LiveStats(List.of(new LiveStats.Lane("0", first.engine()), new LiveStats.Lane("1", second.engine())));
        console = new ConsoleRoutes(stats);
        console.start();
        web = WebServer.builder().host("127.0.0.1").port(0).shutdownHook(false).routing(r -> r.register(console))
                .build().start();
        baseUrl = "http://127.0.0.1:" + web.port();
    }

    @AfterAll
    static void stop() {
        console.close();
        web.stop();
        first.close();
        second.close();
    }

    /** A generation on each engine at once, {@code tokens} long. */
    private static void generateOnBoth(int tokens) {
        int[] prompt = first.engine().tokenizer().encode("input: red apple stone\noutput:", true);
        SamplingParams params = SamplingParams.builder().maxTokens(tokens).ignoreEos(true).build();
        CompletableFuture<Completion> a = first.engine().generate(new GenerationRequest("a-" + System.nanoTime(), "sort",
                prompt, params));
        CompletableFuture<Completion> b = second.engine().generate(new GenerationRequest("b-" + System.nanoTime(), "upper",
                prompt, params));
        a.join();
        b.join();
    }

    @Test
    void eventsNameTheirEngineAndAMigrationNamesBoth() {
        try (Events events = new Events(baseUrl, "?backlog=0")) {
            Event hello = events.next();
            assertThat(hello.data().get("engines").findValuesAsText("engine")).containsExactly("0", "1");
            assertThat(hello.data().get("history").has("1")).isTrue();
            generateOnBoth(6);
            stats.migration("0", "1", "cmpl-moved", "sort", 12);
            Set<String> stepEngines = new HashSet<>();
            Event migration = events.until(e -> {
                if (e.name().equals("step")) {
                    stepEngines.add(e.data().get("engine").asText());
                    assertThat(StatsStreamTest.adaptersOf(e.data())).containsAnyOf("sort", "upper");
                }
                return e.name().equals("migration") && e.data().get("request").asText().equals("cmpl-moved");
            }, 500);
            assertThat(stepEngines).containsExactlyInAnyOrder("0", "1");
            assertThat(migration.data().get("from").asText()).isEqualTo("0");
            assertThat(migration.data().get("to").asText()).isEqualTo("1");
            assertThat(migration.data().get("engine").asText()).isEqualTo("0");
            assertThat(migration.data().get("request").asText()).isEqualTo("cmpl-moved");
            assertThat(migration.data().get("adapter").asText()).isEqualTo("sort");
            assertThat(migration.data().get("tokens").asInt()).isEqualTo(12);
            List<String> summaries = new ArrayList<>();
            events.until(e -> {
                if (e.name().equals("engine")) {
                    summaries.add(e.data().get("engine").asText());
                }
                return summaries.size() == 2;
            }, 500);
            assertThat(summaries).containsExactlyInAnyOrder("0", "1");
        }
    }

    @Test
    void theConsoleDrawsALanePerEngineAndTheMigrationBetweenThem() throws Exception {
        Path chromium = Chromium.find().orElse(null);
        Assumptions.assumeTrue(chromium != null, Chromium.INSTALL_HINT);
        try (Chromium browser = Chromium.launch(chromium, 1440, 1000)) {
            browser.viewport(1440, 1000);
            browser.open(baseUrl + "/#engine");
            browser.waitFor("document.body.dataset.ready === 'true' && document.getElementById('live').dataset.state"
                    + " === 'open'", WAIT);
            generateOnBoth(24);
            stats.migration("0", "1", "cmpl-arrow", "sort", 24);
            browser.waitFor("document.querySelector('.lane[data-engine=\"0\"] g.step')"
                    + " && document.querySelector('.lane[data-engine=\"1\"] g.step')"
                    + " && document.querySelector('svg.migrations path[data-request=\"cmpl-arrow\"]')", WAIT,
                    c -> "Page: " + c.evalString("document.body.innerText.slice(0, 1500)"));
            assertThat(browser.eval("document.querySelectorAll('.lane').length").asInt()).isEqualTo(2);
            // The arrow goes from the first lane's strip down to the second's.
            var ends = browser.eval("""
                    (() => {
                      const p = document.querySelector('svg.migrations path[data-request="cmpl-arrow"]');
                      const len = p.getTotalLength();
                      const a = p.getPointAtLength(0), b = p.getPointAtLength(len);
                      const box = document.getElementById('lanes').getBoundingClientRect();
                      const s0 = document.querySelector('.lane[data-engine="0"] .strip').getBoundingClientRect();
                      const s1 = document.querySelector('.lane[data-engine="1"] .strip').getBoundingClientRect();
                      return {a: a.y + box.top, b: b.y + box.top, s0: [s0.top, s0.bottom], s1: [s1.top, s1.bottom]};
                    })()""");
            assertThat(ends.get("a").asDouble()).isBetween(ends.at("/s0/0").asDouble(), ends.at("/s0/1").asDouble());
            assertThat(ends.get("b").asDouble()).isBetween(ends.at("/s1/0").asDouble(), ends.at("/s1/1").asDouble());
            assertThat(browser.pageErrors()).isEmpty();
            String dir = System.getProperty("punica.console.screenshots");
            if (dir != null) {
                browser.eval("document.getElementById('banner').hidden = true"); // this bare server has no /v1/models
                browser.screenshot(Path.of(dir).resolve("lanes.png"));
            }
        }
    }
}
