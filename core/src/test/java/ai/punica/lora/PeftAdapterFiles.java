package ai.punica.lora;

import ai.punica.backend.DType;
import ai.punica.model.ModelConfig;
import ai.punica.model.SafeTensorsFiles;
import ai.punica.model.SafeTensorsWriter;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/** Writes PEFT-shaped LoRA adapters (adapter_config.json + adapter_model.safetensors) for tests. */
final class PeftAdapterFiles {
    private PeftAdapterFiles() {
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    /** A tiny GQA Llama: hidden 64, 4 heads of 16 sharing 2 KV heads, MLP 96, 3 layers. */
    static final ModelConfig BASE = new ModelConfig("llama", 128, 64, 96, 3, 4, 2, 16, 256, 1e-5f, 10000, null, false,
            false, false, 0, 1, List.of(2), "float32");

    /** adapter_config.json as PEFT 0.13 writes it for r=8, alpha=16 on q_proj and v_proj, then {@code edit}. */
    static String config(Consumer<ObjectNode> edit) {
        try {
            ObjectNode node = (ObjectNode) JSON.readTree("""
                    {"alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "tiny-llama", "bias": "none",
                     "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
                     "layer_replication": null, "layers_pattern": null, "layers_to_transform": null, "loftq_config": {},
                     "lora_alpha": 16, "lora_dropout": 0.05, "megatron_config": null, "megatron_core": "megatron.core",
                     "modules_to_save": null, "peft_type": "LORA", "r": 8, "rank_pattern": {}, "revision": null,
                     "target_modules": ["v_proj", "q_proj"], "task_type": "CAUSAL_LM", "use_dora": false,
                     "use_rslora": false}
                    """);
            edit.accept(node);
            return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(node);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * PEFT tensor names and shapes for {@code modules} ("self_attn.q_proj", ...) of {@code layers}, rank r, on
     * {@link #BASE}: lora_A [r, in], lora_B [out, r]. Shapes are written out here, not taken from Projection.
     */
    static Map<String, long[]> tensors(int r, String[] modules, int... layers) {
        Map<String, long[]> in = Map.of("self_attn.q_proj", new long[] {64, 64}, "self_attn.k_proj", new long[] {32, 64},
                "self_attn.v_proj", new long[] {32, 64}, "self_attn.o_proj", new long[] {64, 64},
                "mlp.gate_proj", new long[] {96, 64}, "mlp.up_proj", new long[] {96, 64},
                "mlp.down_proj", new long[] {64, 96});
        Map<String, long[]> out = new LinkedHashMap<>();
        for (int layer : layers) {
            for (String module : modules) {
                long[] outIn = in.get(module);
                String prefix = "base_model.model.model.layers." + layer + "." + module;
                out.put(prefix + ".lora_A.weight", new long[] {r, outIn[1]});
                out.put(prefix + ".lora_B.weight", new long[] {outIn[0], r});
            }
        }
        return out;
    }

    static final String[] Q_V = {"self_attn.q_proj", "self_attn.v_proj"};
    static final String[] ALL = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

    /** Writes the adapter with seeded random values; the seed of tensor i is {@code seed + i}. */
    static Path write(Path dir, String configJson, Map<String, long[]> tensors, DType dtype, long seed) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve(LoraAdapter.CONFIG_FILE), configJson);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        SafeTensorsWriter writer = new SafeTensorsWriter().metadata("format", "pt");
        long i = seed;
        for (Map.Entry<String, long[]> e : tensors.entrySet()) {
            writer.add(SafeTensorsFiles.randomTensor(e.getKey(), dtype, i++, e.getValue()));
        }
        writer.write(dir.resolve(LoraAdapter.WEIGHTS_FILE));
        return dir;
    }
}
