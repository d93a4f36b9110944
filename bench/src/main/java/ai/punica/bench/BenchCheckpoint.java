package ai.punica.bench;

import ai.punica.backend.DType;
import ai.punica.model.Checkpoint;
import ai.punica.model.ModelConfig;
import ai.punica.model.SafeTensorsWriter;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.List;
import java.util.zip.GZIPInputStream;

/**
 * A benchmark model that needs no download: a HuggingFace model directory with {@code config.json} of a named
 * shape, random bf16 weights ({@link RandomWeights}) in {@code model.safetensors}, and a real tokenizer from the
 * repository's fixtures whose vocabulary has the shape's size. The weights are made one tensor at a time as the
 * file is written, so a 7B checkpoint (13.5 GB) needs no more heap than its largest tensor (the embeddings,
 * 262 MB).
 *
 * <p>Tokenizers: llama-2-7b and mistral-7b (32,000 ids) get {@code fixtures/tokenizer/llama2} (whose id layout
 * is Mistral-7B's; see its SOURCE.json), llama-3-8b (128,256) gets {@code fixtures/tokenizer/llama3}, tiny
 * (1,024) gets the demo model's. They are written as plain {@code tokenizer.json}, which any server reads.
 */
public final class BenchCheckpoint {

    /** A named model shape: its config.json and the fixtures directory its tokenizer comes from. */
    public enum Shape {
        //          id             type       vocab   hidden  MLP    layers heads kv  positions θ          bos     eos
        LLAMA_2_7B("llama-2-7b", "llama", 32000, 4096, 11008, 32, 32, 32, 4096, 1e4, 1, 2, "tokenizer/llama2"),
        /** Tensor-parallel runs (issue 16): 40 heads split over 2, 4, 8 ranks; 26 GB in bf16. */
        LLAMA_2_13B("llama-2-13b", "llama", 32000, 5120, 13824, 40, 40, 40, 4096, 1e4, 1, 2, "tokenizer/llama2"),
        /** Punica's 70B runs: GQA with 8 KV heads; 138 GB in bf16 (needs 2+ H200s, and the disk for it). */
        LLAMA_2_70B("llama-2-70b", "llama", 32000, 8192, 28672, 80, 64, 8, 4096, 1e4, 1, 2, "tokenizer/llama2"),
        LLAMA_3_8B("llama-3-8b", "llama", 128256, 4096, 14336, 32, 32, 8, 8192, 5e5, 128000, 128001,
                "tokenizer/llama3"),
        /** Mistral-7B v0.2 and later: no sliding window, θ = 10⁶. */
        MISTRAL_7B("mistral-7b", "mistral", 32000, 4096, 14336, 32, 32, 8, 32768, 1e6, 1, 2, "tokenizer/llama2"),
        /** The Llama structure at toy sizes with the demo model's tokenizer: for tests and CPU runs. */
        TINY("tiny", "llama", 1024, 64, 160, 2, 4, 2, 1024, 1e4, 1, 2, "model");

        private final String id;
        private final String configJson;
        private final String tokenizerDir;

        Shape(String id, String modelType, int vocab, int hidden, int intermediate, int layers, int heads,
              int kvHeads, int positions, double ropeTheta, int bos, int eos, String tokenizerDir) {
            this.id = id;
            this.tokenizerDir = tokenizerDir;
            ObjectNode c = new ObjectMapper().createObjectNode();
            c.put("model_type", modelType);
            c.putArray("architectures").add(modelType.equals("mistral") ? "MistralForCausalLM" : "LlamaForCausalLM");
            c.put("vocab_size", vocab).put("hidden_size", hidden).put("intermediate_size", intermediate)
                    .put("num_hidden_layers", layers).put("num_attention_heads", heads)
                    .put("num_key_value_heads", kvHeads).put("max_position_embeddings", positions)
                    .put("rms_norm_eps", 1e-5).put("rope_theta", ropeTheta).put("hidden_act", "silu")
                    .put("tie_word_embeddings", false).put("bos_token_id", bos).put("eos_token_id", eos)
                    .put("torch_dtype", "bfloat16");
            if (modelType.equals("mistral")) {
                c.putNull("sliding_window");
            }
            this.configJson = c.toPrettyString() + "\n";
        }

        public String id() {
            return id;
        }

        public ModelConfig config() {
            return ModelConfig.parse(configJson, id);
        }

        /** The shape named {@code id}; an unknown name is an error listing the known ones. */
        public static Shape of(String id) {
            return Arrays.stream(values()).filter(s -> s.id.equals(id)).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("unknown model shape '" + id + "'; known: "
                            + String.join(", ", Arrays.stream(values()).map(Shape::id).toList())));
        }
    }

    private BenchCheckpoint() {
    }

    /**
     * Writes the model directory {@code dir}: config.json, model.safetensors (random weights of {@code seed}),
     * and the shape's tokenizer read from {@code fixtures}. Returns the bytes of weights written.
     */
    public static long write(Shape shape, Path dir, Path fixtures, long seed) throws IOException {
        ModelConfig config = shape.config();
        Path tokenizerSource = fixtures.resolve(shape.tokenizerDir);
        if (!Files.isDirectory(tokenizerSource)) {
            throw new IllegalArgumentException("the " + shape.id + " tokenizer is read from " + tokenizerSource
                    + ", which does not exist; pass the repository's fixtures/ directory");
        }
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), shape.configJson);
        copyTokenizer(tokenizerSource, dir);
        RandomWeights weights = new RandomWeights(config, seed);
        SafeTensorsWriter writer = new SafeTensorsWriter().metadata("format", "pt");
        long bytes = 0;
        for (String name : weights.tensorNames()) {
            long[] tensorShape = weights.shapeOf(name);
            writer.add(name, DType.BF16, tensorShape, () -> weights.get(name));
            bytes += Arrays.stream(tensorShape).reduce(1, (a, b) -> a * b) * DType.BF16.byteSize();
        }
        writer.write(dir.resolve(Checkpoint.SINGLE_FILE));
        return bytes;
    }

    private static void copyTokenizer(Path from, Path to) throws IOException {
        Path plain = from.resolve("tokenizer.json");
        if (Files.isRegularFile(plain)) {
            Files.copy(plain, to.resolve("tokenizer.json"), StandardCopyOption.REPLACE_EXISTING);
        } else {
            try (InputStream in = new GZIPInputStream(Files.newInputStream(from.resolve("tokenizer.json.gz")));
                 OutputStream out = Files.newOutputStream(to.resolve("tokenizer.json"))) {
                in.transferTo(out);
            }
        }
        for (String file : List.of("tokenizer_config.json", "LICENSE")) {
            if (Files.isRegularFile(from.resolve(file))) {
                Files.copy(from.resolve(file), to.resolve(file.equals("LICENSE") ? "TOKENIZER_LICENSE" : file),
                        StandardCopyOption.REPLACE_EXISTING);
            }
        }
        if (Files.isRegularFile(from.resolve("SOURCE.json"))) {
            Files.copy(from.resolve("SOURCE.json"), to.resolve("TOKENIZER_SOURCE.json"),
                    StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
