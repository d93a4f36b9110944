package ai.punica.bench;

import ai.punica.lora.LoraAdapter;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import ai.punica.model.SafeTensorsWriter;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;

/**
 * Writes random PEFT LoRA adapters for a model: {@code adapter_config.json} and {@code adapter_model.safetensors}
 * with lora_A {@code [r, in]} and lora_B {@code [out, r]} of every targeted projection in every layer, bf16
 * uniform with standard deviation {@link RandomWeights#STD} (B is not zero, unlike PEFT's initialisation, so the
 * add-on changes the output and no kernel is timed on zeros).
 *
 * <p>Adapter {@code i} is named {@code prefix} + i, zero-padded to a common width. When {@code distinctWeights}
 * is below {@code count}, adapter i's weights file is a hard link to adapter (i mod distinctWeights)'s: a server
 * still sees {@code count} adapters (each loaded on its own), and 1,000 adapters of a 7B model (80 MB each at
 * rank 16 on all seven projections) need not fill the disk.
 *
 * @param rank      r of every module
 * @param alpha     lora_alpha
 * @param targets   the projections adapted, in every layer
 */
public record RandomAdapters(int rank, double alpha, List<Projection> targets) {

    public static final double DEFAULT_ALPHA = 32;
    private static final ObjectMapper JSON = new ObjectMapper();

    public RandomAdapters {
        if (rank <= 0) {
            throw new IllegalArgumentException("adapter rank " + rank + " must be positive");
        }
        if (targets.isEmpty()) {
            throw new IllegalArgumentException("an adapter needs at least one target module");
        }
        targets = List.copyOf(targets);
    }

    /** Rank {@code rank} on all seven projections, lora_alpha {@value #DEFAULT_ALPHA}. */
    public static RandomAdapters allProjections(int rank) {
        return new RandomAdapters(rank, DEFAULT_ALPHA, List.of(Projection.values()));
    }

    /** Parses "q_proj,k_proj,..." or "all"; a name that is not one of the seven projections is an error naming it. */
    public static List<Projection> parseTargets(String list) {
        if (list.equals("all")) {
            return List.of(Projection.values());
        }
        List<Projection> out = new ArrayList<>();
        for (String name : list.split(",")) {
            Projection p = Projection.fromModuleName(name.trim());
            if (p == null) {
                throw new IllegalArgumentException("target module '" + name.trim() + "' is not one of q_proj, "
                        + "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (or 'all')");
            }
            if (!out.contains(p)) {
                out.add(p);
            }
        }
        return out;
    }

    /** The adapter names {@link #write} gives: prefix + zero-padded index. */
    public static List<String> names(String prefix, int count) {
        int width = Math.max(3, String.valueOf(Math.max(0, count - 1)).length());
        List<String> names = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            names.add(prefix + String.format(Locale.ROOT, "%0" + width + "d", i));
        }
        return names;
    }

    /** Bytes of one adapter's weights for {@code config}. */
    public long weightBytes(ModelConfig config) {
        long perLayer = 0;
        for (Projection p : targets) {
            perLayer += (long) rank * (p.inFeatures(config) + p.outFeatures(config));
        }
        return perLayer * config.numLayers() * 2;
    }

    /**
     * Writes {@code count} adapters into {@code root}/{name} (see {@link #names}); returns their directories.
     * Adapter i's weights are seeded by {@code seed} and i mod {@code distinctWeights}.
     */
    public List<Path> write(ModelConfig config, Path root, String prefix, int count, int distinctWeights, long seed)
            throws IOException {
        if (distinctWeights <= 0) {
            throw new IllegalArgumentException("distinct adapter weights " + distinctWeights + " must be positive");
        }
        Files.createDirectories(root);
        String adapterConfig = adapterConfigJson();
        List<String> names = names(prefix, count);
        List<Path> dirs = names.stream().map(root::resolve).toList();
        int distinct = Math.min(count, distinctWeights);
        // The distinct weight files in parallel (each tensor is too small to split), then the links.
        IntStream.range(0, distinct).parallel().forEach(n -> writeWeights(config, dirs.get(n), n, seed,
                adapterConfig));
        for (int n = distinct; n < count; n++) {
            Path dir = dirs.get(n);
            Files.createDirectories(dir);
            Files.writeString(dir.resolve(LoraAdapter.CONFIG_FILE), adapterConfig);
            Path weights = dir.resolve(LoraAdapter.WEIGHTS_FILE);
            Files.deleteIfExists(weights);
            Files.createLink(weights, dirs.get(n % distinct).resolve(LoraAdapter.WEIGHTS_FILE));
        }
        return dirs;
    }

    private void writeWeights(ModelConfig config, Path dir, int n, long seed, String adapterConfig) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve(LoraAdapter.CONFIG_FILE), adapterConfig);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write adapter " + dir, e);
        }
        double halfWidth = RandomWeights.STD * Math.sqrt(3);
        SafeTensorsWriter writer = new SafeTensorsWriter();
        for (int l = 0; l < config.numLayers(); l++) {
            for (Projection p : targets) {
                long s = seed * 1_000_003L + ((long) n * config.numLayers() + l) * 16 + p.ordinal();
                String prefix = "base_model.model." + p.modulePath(l);
                writer.add(RandomWeights.uniform(prefix + ".lora_A.weight", new long[] {rank, p.inFeatures(config)},
                        0, halfWidth, s));
                writer.add(RandomWeights.uniform(prefix + ".lora_B.weight", new long[] {p.outFeatures(config), rank},
                        0, halfWidth, ~s));
            }
        }
        writer.metadata("format", "pt");
        writer.write(dir.resolve(LoraAdapter.WEIGHTS_FILE));
    }

    private String adapterConfigJson() throws IOException {
        ObjectNode c = JSON.createObjectNode();
        c.put("peft_type", "LORA");
        c.put("task_type", "CAUSAL_LM");
        c.put("r", rank);
        c.put("lora_alpha", alpha);
        c.put("lora_dropout", 0.0);
        c.put("bias", "none");
        ArrayNode modules = c.putArray("target_modules");
        targets.forEach(p -> modules.add(p.moduleName()));
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(c) + "\n";
    }
}
