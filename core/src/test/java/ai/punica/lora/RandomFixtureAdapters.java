package ai.punica.lora;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.model.ModelConfig;
import ai.punica.model.SafeTensorsWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * Small random PEFT adapters for the bundled fixture model, for tests that need thousands of them: rank 1 on
 * q_proj and v_proj of every layer, bf16, values from a seed, about 7 KB each on disk.
 */
public final class RandomFixtureAdapters {
    private RandomFixtureAdapters() {
    }

    private static final ModelConfig BASE = ModelConfig.load(Fixtures.model().resolve("config.json"));

    /** lora_alpha 0.5 on r = 1: each adapter moves the logits enough to change greedy answers. */
    private static final String CONFIG = """
            {"base_model_name_or_path": "fixtures/model", "bias": "none", "fan_in_fan_out": false,
             "inference_mode": true, "lora_alpha": 0.5, "lora_dropout": 0.0, "modules_to_save": null,
             "peft_type": "LORA", "r": 1, "rank_pattern": {}, "alpha_pattern": {},
             "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_dora": false, "use_rslora": false}
            """;

    /** Writes the adapter of {@code seed} into {@code dir} (created). */
    public static Path write(Path dir, long seed) {
        int hidden = BASE.hiddenSize();
        int kv = BASE.numKvHeads() * BASE.headDim();
        int q = BASE.numHeads() * BASE.headDim();
        SplittableRandom random = new SplittableRandom(seed);
        SafeTensorsWriter writer = new SafeTensorsWriter().metadata("format", "pt");
        for (int layer = 0; layer < BASE.numLayers(); layer++) {
            String prefix = "base_model.model.model.layers." + layer + ".self_attn.";
            writer.add(prefix + "q_proj.lora_A.weight", DType.BF16, new long[] {1, hidden}, values(random, hidden));
            writer.add(prefix + "q_proj.lora_B.weight", DType.BF16, new long[] {q, 1}, values(random, q));
            writer.add(prefix + "v_proj.lora_A.weight", DType.BF16, new long[] {1, hidden}, values(random, hidden));
            writer.add(prefix + "v_proj.lora_B.weight", DType.BF16, new long[] {kv, 1}, values(random, kv));
        }
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve(LoraAdapter.CONFIG_FILE), CONFIG);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        writer.write(dir.resolve(LoraAdapter.WEIGHTS_FILE));
        return dir;
    }

    private static float[] values(SplittableRandom random, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) random.nextDouble(-1, 1);
        }
        return v;
    }
}
