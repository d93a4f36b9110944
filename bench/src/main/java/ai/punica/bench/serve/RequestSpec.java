package ai.punica.bench.serve;

/**
 * One request of a run, decided before the run starts.
 *
 * @param index           position in the run (0-based)
 * @param arrivalSeconds  when it is sent, seconds from the start (open loop); NaN in a closed loop
 * @param model           the model id asked for: an adapter's name or the base model's
 */
public record RequestSpec(int index, double arrivalSeconds, String model, PromptSample sample) {
}
