package ai.punica.model;

import static ai.punica.model.SafeTensorsFiles.randomTensor;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.backend.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

    @TempDir
    Path dir;

    private void writeShards() throws IOException {
        new SafeTensorsWriter()
                .add(randomTensor("model.embed_tokens.weight", DType.BF16, 1, 16, 8))
                .add(randomTensor("model.layers.0.input_layernorm.weight", DType.BF16, 2, 8))
                .write(dir.resolve("model-00001-of-00002.safetensors"));
        new SafeTensorsWriter()
                .add(randomTensor("model.norm.weight", DType.BF16, 3, 8))
                .add(randomTensor("lm_head.weight", DType.BF16, 4, 16, 8))
                .write(dir.resolve("model-00002-of-00002.safetensors"));
        Files.writeString(dir.resolve(Checkpoint.INDEX_FILE), """
                {"metadata": {"total_size": 560},
                 "weight_map": {
                   "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                   "model.layers.0.input_layernorm.weight": "model-00001-of-00002.safetensors",
                   "model.norm.weight": "model-00002-of-00002.safetensors",
                   "lm_head.weight": "model-00002-of-00002.safetensors"}}
                """);
    }

    @Test
    void opensASingleFileCheckpoint() {
        new SafeTensorsWriter()
                .add(randomTensor("model.norm.weight", DType.F32, 5, 8))
                .add(randomTensor("model.embed_tokens.weight", DType.F32, 6, 4, 8))
                .write(dir.resolve(Checkpoint.SINGLE_FILE));
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            assertThat(ckpt.names()).containsExactly("model.embed_tokens.weight", "model.norm.weight");
            assertThat(ckpt.contains("model.norm.weight")).isTrue();
            assertThat(ckpt.get("model.norm.weight").toFloatArray())
                    .containsExactly(SafeTensorsFiles.randomValues(5, 8));
            assertThat(ckpt.files()).hasSize(1);
        }
    }

    @Test
    void opensEachShardOnceAndFindsTensorsThroughTheIndex() throws IOException {
        writeShards();
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            assertThat(ckpt.files()).hasSize(2);
            assertThat(ckpt.names()).containsExactly("lm_head.weight", "model.embed_tokens.weight",
                    "model.layers.0.input_layernorm.weight", "model.norm.weight");
            assertThat(ckpt.get("lm_head.weight").shape()).containsExactly(16, 8);
            assertThat(ckpt.get("model.layers.0.input_layernorm.weight").dtype()).isEqualTo(DType.BF16);
        }
    }

    @Test
    void missingShardIsNamedWithTheIndex() throws IOException {
        writeShards();
        Files.delete(dir.resolve("model-00002-of-00002.safetensors"));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(dir.resolve(Checkpoint.INDEX_FILE).toString())
                .hasMessageContaining("shard 'model-00002-of-00002.safetensors'")
                .hasMessageContaining("does not exist");
    }

    @Test
    void indexEntryAbsentFromItsShardIsRejected() throws IOException {
        writeShards();
        String index = Files.readString(dir.resolve(Checkpoint.INDEX_FILE))
                .replace("\"model.norm.weight\": \"model-00002", "\"model.norm.weight\": \"model-00001");
        Files.writeString(dir.resolve(Checkpoint.INDEX_FILE), index);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(Checkpoint.INDEX_FILE)
                .hasMessageContaining("'model.norm.weight' in shard 'model-00001-of-00002.safetensors' but that shard has "
                        + "no such tensor");
    }

    @Test
    void indexWithoutWeightMapIsRejected() throws IOException {
        Files.writeString(dir.resolve(Checkpoint.INDEX_FILE), "{\"metadata\": {}}");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(Checkpoint.INDEX_FILE)
                .hasMessageContaining("'weight_map' is missing");
    }

    @Test
    void shardOutsideTheModelDirectoryIsRejected() throws IOException {
        Files.writeString(dir.resolve(Checkpoint.INDEX_FILE),
                "{\"weight_map\": {\"w\": \"../elsewhere.safetensors\"}}");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining("outside the model directory");
    }

    @Test
    void corruptShardIsNamed() throws IOException {
        writeShards();
        Path shard = dir.resolve("model-00001-of-00002.safetensors");
        byte[] bytes = Files.readAllBytes(shard);
        Files.write(shard, java.util.Arrays.copyOf(bytes, bytes.length - 3));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageStartingWith(shard.toString())
                .hasMessageContaining("truncated");
    }

    @Test
    void directoryWithoutWeightsSaysWhatItLookedFor() throws IOException {
        Files.writeString(dir.resolve("pytorch_model.bin"), "not really");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(ModelFormatException.class)
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("no model.safetensors and no model.safetensors.index.json")
                .hasMessageContaining("safe_serialization=True");
    }

    @Test
    void missingTensorNamesTheCheckpoint() {
        new SafeTensorsWriter().add(randomTensor("model.norm.weight", DType.F32, 5, 8))
                .write(dir.resolve(Checkpoint.SINGLE_FILE));
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> ckpt.get("lm_head.weight"))
                    .isInstanceOf(ModelFormatException.class)
                    .hasMessageContaining(dir.toString())
                    .hasMessageContaining("no tensor 'lm_head.weight'");
        }
    }
}
