package ai.punica.bench.serve;

import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * Everything one run of {@code punica bench serve} needs.
 *
 * @param baseUrl          the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1
 * @param baseModel        the base model's id; null: the first model /v1/models lists without a parent
 * @param adapters         adapter ids to draw from; null: every model /v1/models lists with a parent (vLLM and
 *                         Punica-J mark LoRA adapters so)
 * @param dataset          JSONL file of prompts; null: synthetic lengths
 * @param inputLen         synthetic prompt length in tokens (mean)
 * @param outputLen        synthetic output length in tokens (mean)
 * @param rangeRatio       synthetic lengths are uniform in [len·(1 − r), len·(1 + r)]
 * @param tokenizer        model directory whose tokenizer counts prompt tokens; null: the server's /tokenize if
 *                         it has one, else none (synthetic prompts are then of about inputLen words)
 * @param warmupRequests   requests sent (and waited for) before the timed run, not recorded
 */
public record ServeBenchConfig(URI baseUrl, String apiKey, boolean chat, boolean ignoreEos, double temperature,
                               Duration requestTimeout, String baseModel, List<String> adapters,
                               AdapterPopularity workload, ArrivalProcess arrivals, Path dataset, int inputLen,
                               int outputLen, double rangeRatio, Path tokenizer, RunSummary.Slo slo, long seed,
                               Duration metricsInterval, int warmupRequests, boolean progress) {

    /** The server root (the base URL without /v1), where /metrics and /tokenize live. */
    public URI serverRoot() {
        String s = baseUrl.toString().replaceAll("/+$", "");
        return URI.create(s.endsWith("/v1") ? s.substring(0, s.length() - 3) + "/" : s + "/");
    }

    public ServeBenchConfig with(AdapterPopularity w, ArrivalProcess a) {
        return new ServeBenchConfig(baseUrl, apiKey, chat, ignoreEos, temperature, requestTimeout, baseModel, adapters,
                w, a, dataset, inputLen, outputLen, rangeRatio, tokenizer, slo, seed, metricsInterval, warmupRequests,
                progress);
    }
}
