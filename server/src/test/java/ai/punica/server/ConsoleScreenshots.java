package ai.punica.server;

import ai.punica.engine.EngineBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The console's screenshots in docs/console: the playground with every model answering, its log-prob
 * view with a token's alternatives, the engine view under a mixed load of all adapters, and the
 * adapters page.
 */
final class ConsoleScreenshots {
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static final int CONCURRENT = 7;
    private static final List<String> MODELS = List.of("upper", "reverse", "translate", "sort", TestServers.BASE);

    private ConsoleScreenshots() {
    }

    static void take(Chromium browser, EngineBuilder.Runtime runtime, PunicaServer server, Http http, Path dir) throws Exception {
        browser.viewport(1440, 900);
        // Every adapter in a slot first, so the playground's requests share steps from their first token.
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (String model : MODELS) {
                pool.submit(() -> http.post("/v1/completions", """
                        {"model":"%s","prompt":"input: a\\noutput:","max_tokens":1}""".formatted(model)));
            }
        }
        ConsoleBrowserTest.open(browser, server);
        ConsoleBrowserTest.useKey(browser, ConsoleBrowserTest.KEY);
        browser.waitFor("document.querySelectorAll('#model-chips .chip[aria-pressed=\"true\"]').length === 5", WAIT);
        browser.eval("document.getElementById('prompt').value = 'input: sun river cold\\noutput:'");
        // A little warmth, with a seed, so the log-prob view has alternatives worth hovering.
        browser.eval("document.getElementById('temperature').value = '0.7'");
        browser.eval("document.getElementById('temperature').dispatchEvent(new Event('input'))");
        browser.eval("document.getElementById('seed').value = '7'");
        browser.eval("document.getElementById('generate').click()");
        browser.waitFor("document.querySelectorAll('.column[data-state=\"done\"]').length === 5", WAIT);
        Thread.sleep(600); // the batch strip redraws at most ten times a second
        browser.screenshot(dir.resolve("playground.png"));

        browser.eval("document.querySelector('[data-view=\"logprobs\"]').click()");
        browser.waitFor("document.querySelectorAll('.column[data-model=\"translate\"] .tok').length > 2", WAIT);
        JsonNode box = browser.eval("""
                (() => {
                  const toks = [...document.querySelectorAll('.column[data-model="translate"] .tok')];
                  const r = toks[2].getBoundingClientRect();
                  return {x: r.x + r.width / 2, y: r.y + r.height / 2};
                })()""");
        browser.send("Input.dispatchMouseEvent", Map.of("type", "mouseMoved", "x", box.get("x").asDouble(),
                "y", box.get("y").asDouble()));
        browser.waitFor("!document.getElementById('tooltip').hidden", WAIT);
        browser.screenshot(dir.resolve("logprobs.png"));
        browser.send("Input.dispatchMouseEvent", Map.of("type", "mouseMoved", "x", 5, "y", 5));

        browser.eval("location.hash = '#engine'");
        AtomicBoolean loading = new AtomicBoolean(true);
        try (ExecutorService pool = Executors.newFixedThreadPool(CONCURRENT)) {
            long firstStep = runtime.engine().stats().steps();
            for (int i = 0; i < CONCURRENT; i++) {
                long seed = i;
                pool.submit(() -> mixedLoad(http, loading, new SplittableRandom(seed)));
            }
            // Enough steps for a full strip, however fast this machine is.
            long end = System.nanoTime() + WAIT.toNanos();
            while (runtime.engine().stats().steps() < firstStep + 130 && System.nanoTime() < end) {
                Thread.sleep(50);
            }
            Thread.sleep(1500); // a summary event and a redraw
            browser.screenshot(dir.resolve("engine.png"));
            loading.set(false);
        }

        browser.eval("location.hash = '#adapters'");
        browser.waitFor("document.querySelectorAll('#adapter-rows tr[data-adapter]').length === 4", WAIT);
        browser.eval("document.getElementById('load-name').value = 'shout'");
        browser.eval("document.getElementById('load-path').value = 'upper'");
        browser.screenshot(dir.resolve("adapters.png"));
    }

    /**
     * One client's requests, one after another, for random models with random lengths: with several
     * clients, steps hold several adapter segments, prefill chunks next to decode rows, and requests come
     * and go.
     */
    private static void mixedLoad(Http http, AtomicBoolean loading, SplittableRandom random) {
        while (loading.get()) {
            String model = MODELS.get(random.nextInt(MODELS.size()));
            int tokens = 8 + random.nextInt(40);
            http.post("/v1/completions", """
                    {"model":"%s","prompt":"input: red apple stone\\noutput:","max_tokens":%d,"temperature":0.8,\
                    "ignore_eos":true}""".formatted(model, tokens));
        }
    }
}
