package ai.punica.model;

import ai.punica.backend.TensorData;
import ai.punica.json.JsonField;
import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * A model directory's weights: {@code model.safetensors}, or the shards that
 * {@code model.safetensors.index.json} lists in its {@code weight_map} (tensor name → shard file). Each
 * shard is mapped once; tensors are slices of those mappings.
 */
public final class Checkpoint implements WeightSource, AutoCloseable {

    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path directory;
    private final List<SafeTensors> shards;
    private final Map<String, SafeTensors> shardOf;

    private Checkpoint(Path directory, List<SafeTensors> shards, Map<String, SafeTensors> shardOf) {
        this.directory = directory;
        this.shards = shards;
        this.shardOf = shardOf;
    }

    /** Opens the weights of {@code modelDir}; {@link ModelFormatException} names the file and what is wrong. */
    public static Checkpoint open(Path modelDir) {
        Path index = modelDir.resolve(INDEX_FILE);
        if (Files.isRegularFile(index)) {
            return openSharded(modelDir, index);
        }
        Path single = modelDir.resolve(SINGLE_FILE);
        if (Files.isRegularFile(single)) {
            SafeTensors file = SafeTensors.open(single);
            Map<String, SafeTensors> shardOf = new TreeMap<>();
            for (String name : file.names()) {
                shardOf.put(name, file);
            }
            return new Checkpoint(modelDir, List.of(file), shardOf);
        }
        if (!Files.isDirectory(modelDir)) {
            throw new ModelFormatException(modelDir + ": not a directory; pass the model directory "
                    + "(the one holding config.json and " + SINGLE_FILE + ")");
        }
        String hint = Files.exists(modelDir.resolve("pytorch_model.bin"))
                || Files.exists(modelDir.resolve("pytorch_model.bin.index.json"))
                ? "; it has PyTorch .bin weights, which Punica-J does not read: re-save with "
                        + "model.save_pretrained(dir, safe_serialization=True)"
                : "";
        throw new ModelFormatException(modelDir + ": no " + SINGLE_FILE + " and no " + INDEX_FILE + hint);
    }

    private static Checkpoint openSharded(Path modelDir, Path index) {
        JsonField json = JsonField.read(index, ModelFormatException::new);
        JsonNode weightMap = json.node("weight_map");
        if (weightMap == null || !weightMap.isObject()) {
            throw new ModelFormatException(index + ": field 'weight_map' is "
                    + (weightMap == null ? "missing" : weightMap.toString())
                    + "; expected an object mapping tensor names to shard files");
        }
        // Shard file → tensor names it should hold, in file order.
        Map<String, List<String>> byShard = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = weightMap.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw new ModelFormatException(index + ": weight_map maps '" + e.getKey() + "' to " + e.getValue()
                        + "; expected a shard file name");
            }
            byShard.computeIfAbsent(e.getValue().textValue(), k -> new ArrayList<>()).add(e.getKey());
        }
        if (byShard.isEmpty()) {
            throw new ModelFormatException(index + ": weight_map is empty; the checkpoint has no tensors");
        }
        List<SafeTensors> shards = new ArrayList<>();
        Map<String, SafeTensors> shardOf = new TreeMap<>();
        try {
            Path root = modelDir.toAbsolutePath().normalize();
            for (Map.Entry<String, List<String>> e : byShard.entrySet()) {
                String shardName = e.getKey();
                Path shardPath = root.resolve(shardName).normalize();
                if (!shardPath.startsWith(root)) {
                    throw new ModelFormatException(index + ": weight_map names shard '" + shardName
                            + "', which lies outside the model directory");
                }
                if (!Files.isRegularFile(shardPath)) {
                    throw new ModelFormatException(index + ": weight_map names shard '" + shardName + "' (for "
                            + e.getValue().size() + " tensors, e.g. '" + e.getValue().getFirst()
                            + "') but that file does not exist in " + modelDir + "; the download is incomplete");
                }
                SafeTensors shard = SafeTensors.open(shardPath);
                shards.add(shard);
                for (String name : e.getValue()) {
                    if (!shard.contains(name)) {
                        throw new ModelFormatException(index + ": weight_map puts tensor '" + name + "' in shard '"
                                + shardName + "' but that shard has no such tensor");
                    }
                    shardOf.put(name, shard);
                }
            }
        } catch (RuntimeException e) {
            shards.forEach(SafeTensors::close);
            throw e;
        }
        return new Checkpoint(modelDir, List.copyOf(shards), shardOf);
    }

    public Path directory() {
        return directory;
    }

    /** Tensor names, sorted. For a sharded checkpoint, those in the index's weight_map. */
    public Set<String> names() {
        return Collections.unmodifiableSet(shardOf.keySet());
    }

    @Override
    public boolean contains(String name) {
        return shardOf.containsKey(name);
    }

    /** The tensor, a slice of its shard's mapping; {@link ModelFormatException} naming the directory if absent. */
    @Override
    public TensorData get(String name) {
        SafeTensors shard = shardOf.get(name);
        if (shard == null) {
            throw new ModelFormatException(directory + ": the checkpoint has no tensor '" + name + "' ("
                    + shardOf.size() + " tensors in " + shards.size() + " file(s)); is it the model config.json describes?");
        }
        return shard.get(name);
    }

    /** The shard files, each opened once. */
    public List<SafeTensors> files() {
        return shards;
    }

    @Override
    public void close() {
        shards.forEach(SafeTensors::close);
    }
}
