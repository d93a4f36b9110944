package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.Socket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Many streams at once across every adapter (one mixed batch in the engine), and clients that hang
 * up mid-stream: their requests must be cancelled at once so their KV pages come back.
 */
class ConcurrentStreamingTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int STREAMS = 64;
    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static Http http;

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> { });
        http = new Http(server, null);
    }

    @AfterAll
    static void stop() {
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    /** Request i: skill i mod 5, the (i / 5)-th line of that skill's eval set; chat for odd i. */
    private record Job(String skill, EvalCase eval, boolean chat) {
        String body() throws Exception {
            String model = JSON.writeValueAsString(TestServers.modelFor(skill));
            return chat
                    ? """
                      {"model":%s,"messages":[{"role":"user","content":%s}],"max_tokens":32,"temperature":0,\
                      "stream":true}""".formatted(model, JSON.writeValueAsString(eval.user()))
                    : """
                      {"model":%s,"prompt":%s,"max_tokens":32,"temperature":0,"stream":true}"""
                            .formatted(model, JSON.writeValueAsString(eval.prompt()));
        }

        String path() {
            return chat ? "/v1/chat/completions" : "/v1/completions";
        }
    }

    private static List<Job> jobs(int count) {
        List<Job> out = new ArrayList<>();
        int perSkill = (count + TestServers.SKILLS.size() - 1) / TestServers.SKILLS.size();
        List<List<EvalCase>> sets = TestServers.SKILLS.stream().map(s -> TestServers.eval(s, perSkill)).toList();
        for (int i = 0; i < count; i++) {
            int skill = i % TestServers.SKILLS.size();
            out.add(new Job(TestServers.SKILLS.get(skill), sets.get(skill).get(i / TestServers.SKILLS.size()),
                    i % 2 == 1));
        }
        return out;
    }

    /** The streamed text of one request, read to [DONE]. */
    private static String streamText(Job job) throws Exception {
        Http.Response r = http.post(job.path(), job.body());
        assertThat(r.status()).as(r.body()).isEqualTo(200);
        List<String> data = Http.sseData(r.body());
        assertThat(data.getLast()).isEqualTo("[DONE]");
        StringBuilder text = new StringBuilder();
        for (String d : data.subList(0, data.size() - 1)) {
            JsonNode choice = JSON.readTree(d).at("/choices/0");
            text.append(job.chat() ? choice.at("/delta/content").asText("") : choice.get("text").asText());
        }
        return text.toString().trim();
    }

    @Test
    void sixtyFourConcurrentStreamsAcrossAllAdaptersAnswerCorrectly() throws Exception {
        List<Job> jobs = jobs(STREAMS);
        List<Future<String>> answers = new ArrayList<>();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (Job job : jobs) {
                answers.add(pool.submit(() -> streamText(job)));
            }
            for (int i = 0; i < jobs.size(); i++) {
                assertThat(answers.get(i).get()).as("request %d (%s)", i, jobs.get(i)).isEqualTo(jobs.get(i).eval().expected());
            }
        }
        awaitKvPoolEmpty();
    }

    @Test
    void clientsThatHangUpMidStreamAreCancelledAndTheRestFinish() throws Exception {
        List<Job> jobs = jobs(STREAMS);
        List<Future<String>> answers = new ArrayList<>();
        List<Socket> hungUp = new ArrayList<>();
        long generatedBefore = runtime.engine().stats().generationTokens();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < jobs.size(); i++) {
                Job job = jobs.get(i);
                if (i % 4 == 3) {
                    // Would run ~900 tokens if nobody cancelled it: long enough that a leak shows.
                    String body = job.body().replace("\"max_tokens\":32", "\"max_tokens\":900,\"ignore_eos\":true");
                    hungUp.add(Http.openStreamAndReadFirstFrame(server, job.path(), body));
                } else {
                    answers.add(pool.submit(() -> streamText(job)));
                }
            }
            for (Socket s : hungUp) {
                s.close();
            }
            int k = 0;
            for (int i = 0; i < jobs.size(); i++) {
                if (i % 4 != 3) {
                    assertThat(answers.get(k++).get()).as("request %d", i).isEqualTo(jobs.get(i).eval().expected());
                }
            }
        }
        assertThat(hungUp).hasSize(16);
        awaitKvPoolEmpty();
        assertThat(runtime.engine().liveRequestIds()).isEmpty();
        // Uncancelled, the 16 would have generated 16 × 900 tokens; cancelled on their next write,
        // they stop after a handful each (the 48 others generate at most 32 each).
        long generated = runtime.engine().stats().generationTokens() - generatedBefore;
        assertThat(generated).isLessThan(48 * 32 + 16 * 100);
    }

    /** Every request is gone from the engine and has returned its pages (cancellation took effect). */
    private static void awaitKvPoolEmpty() throws InterruptedException {
        long end = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (System.nanoTime() < end
                && (runtime.engine().stats().kvPagesUsed() > 0 || runtime.engine().stats().running() > 0)) {
            Thread.sleep(20);
        }
        assertThat(runtime.engine().stats().kvPagesUsed()).as("KV pages still in use").isZero();
        assertThat(runtime.engine().stats().running()).isZero();
    }
}
