package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import ai.punica.tokenizer.AddedVocabulary.AddedToken;
import ai.punica.tokenizer.AddedVocabulary.Segment;
import ai.punica.tokenizer.PreTokenizer.Piece;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A HuggingFace {@code tokenizer.json} tokenizer (BPE family: Llama-2/Mistral SentencePiece-style
 * and Llama-3/GPT-2/Qwen2 byte-level), with the special tokens and chat template of
 * {@code tokenizer_config.json}. Immutable and safe to share between threads.
 *
 * <pre>
 * encode: text ─► added tokens cut out (raw) ─► normalizer ─► added tokens cut out (normalized)
 *              ─► pre-tokenizer (words) ─► BPE per word (cached) ─► post-processor (e.g. &lt;s&gt;)
 * decode: ids ─► token strings (specials dropped if asked) ─► decoder chain ─► text
 * </pre>
 */
public final class Tokenizer {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final BpeModel model;
    private final AddedVocabulary added;
    private final Normalizer normalizer;
    private final PreTokenizer preTokenizer;
    private final PostProcessor postProcessor;
    private final Decoder decoder;
    private final Map<String, Integer> addedIds = new HashMap<>();
    private final String[] addedById;
    private final boolean[] special;
    private final int vocabSize;
    private final String bosToken;
    private final String eosToken;
    private final ChatTemplate chatTemplate;
    private final boolean decodesByteFallback;

    private Tokenizer(JsonField root, JsonField config) {
        normalizer = Normalizer.parse(root.get("normalizer"));
        preTokenizer = PreTokenizer.parse(root.get("pre_tokenizer"));
        model = BpeModel.parse(root.get("model"));
        postProcessor = PostProcessor.parse(root.get("post_processor"));
        decoder = Decoder.parse(root.get("decoder"));
        decodesByteFallback = containsByteFallback(decoder);
        added = AddedVocabulary.parse(root.get("added_tokens"), normalizer);

        int maxId = model.vocab().values().stream().mapToInt(Integer::intValue).max().orElse(-1);
        for (AddedToken t : added.tokens()) {
            maxId = Math.max(maxId, t.id());
        }
        addedById = new String[maxId + 1];
        special = new boolean[maxId + 1];
        for (AddedToken t : added.tokens()) {
            addedIds.put(t.content(), t.id());
            addedById[t.id()] = t.content();
            special[t.id()] = t.special();
        }
        // HF counts the union of model vocabulary and added tokens (Llama-2 re-adds <unk>, <s>, </s>).
        int count = model.vocab().size();
        for (AddedToken t : added.tokens()) {
            if (model.idToToken(t.id()) == null) {
                count++;
            }
        }
        vocabSize = count;

        bosToken = config == null ? null : specialTokenText(config.get("bos_token"));
        eosToken = config == null ? null : specialTokenText(config.get("eos_token"));
        String template = config == null ? null : chatTemplateSource(config.get("chat_template"));
        chatTemplate = template == null ? null
                : ChatTemplate.compile(template, bosToken == null ? "" : bosToken, eosToken == null ? "" : eosToken);
    }

    private static boolean containsByteFallback(Decoder d) {
        return d instanceof Decoder.ByteFallback
                || (d instanceof Decoder.Sequence seq && seq.decoders().stream().anyMatch(Tokenizer::containsByteFallback));
    }

    /**
     * Loads {@code tokenizer.json} (or, if absent, {@code tokenizer.json.gz}) and, if present,
     * {@code tokenizer_config.json} from a model directory.
     */
    public static Tokenizer load(Path modelDir) {
        Path tokenizerFile = modelDir.resolve("tokenizer.json");
        Path gzipped = modelDir.resolve("tokenizer.json.gz");
        Path configFile = modelDir.resolve("tokenizer_config.json");
        boolean plain = Files.isRegularFile(tokenizerFile);
        if (!plain && !Files.isRegularFile(gzipped)) {
            throw new TokenizerException(tokenizerFile + " does not exist; a model directory needs a HuggingFace "
                    + "tokenizer.json (a slow-tokenizer-only model must first be converted with transformers)");
        }
        Path source = plain ? tokenizerFile : gzipped;
        try {
            String tokenizerJson = plain ? Files.readString(tokenizerFile) : readGzip(gzipped);
            String configJson = Files.isRegularFile(configFile) ? Files.readString(configFile) : null;
            return new Tokenizer(readJson(tokenizerJson, source.toString()),
                    configJson == null ? null : readJson(configJson, configFile.toString()));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read tokenizer files in " + modelDir, e);
        }
    }

    private static String readGzip(Path file) throws IOException {
        try (var in = new java.util.zip.GZIPInputStream(Files.newInputStream(file))) {
            return new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        }
    }

    /** Builds a tokenizer from the text of tokenizer.json and (nullable) tokenizer_config.json. */
    public static Tokenizer fromJson(String tokenizerJson, String tokenizerConfigJson) {
        return new Tokenizer(readJson(tokenizerJson, "tokenizer.json"),
                tokenizerConfigJson == null ? null : readJson(tokenizerConfigJson, "tokenizer_config.json"));
    }

    private static JsonField readJson(String text, String file) {
        try {
            JsonNode node = JSON.readTree(text);
            if (node == null || !node.isObject()) {
                throw new TokenizerException(file + ": expected a JSON object at the top level");
            }
            return JsonField.root(file, node, TokenizerException::new);
        } catch (JsonProcessingException e) {
            throw new TokenizerException(file + ": not valid JSON: " + e.getOriginalMessage()
                    + " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")", e);
        }
    }

    /** {@code "bos_token": "<s>"} or {@code "bos_token": {"content": "<s>", ...}}. */
    private static String specialTokenText(JsonField json) {
        if (json.isAbsent()) {
            return null;
        }
        if (json.node().isObject()) {
            return json.get("content").text();
        }
        return json.text();
    }

    /** A template string, or a list of named templates of which "default" is used. */
    private static String chatTemplateSource(JsonField json) {
        if (json.isAbsent()) {
            return null;
        }
        if (json.node().isArray()) {
            List<String> names = new ArrayList<>();
            for (JsonField entry : json.elements()) {
                String name = entry.get("name").text();
                if (name.equals("default")) {
                    return entry.get("template").text();
                }
                names.add(name);
            }
            throw json.error("no template named \"default\" among " + names);
        }
        return json.text();
    }

    /**
     * Token ids of {@code text}; with {@code addSpecialTokens} the post-processor adds what the
     * model expects around a single sequence (e.g. Llama-2's {@code <s>}).
     */
    public int[] encode(String text, boolean addSpecialTokens) {
        IntList ids = new IntList(text.length() / 3 + 4);
        List<Segment> normalizedPieces = new ArrayList<>();
        for (Segment raw : added.splitRaw(text)) {
            if (raw.tokenId() >= 0) {
                ids.add(raw.tokenId());
                continue;
            }
            String normalized = normalizer == null ? raw.text() : normalizer.normalize(raw.text());
            normalizedPieces.clear();
            added.splitNormalized(normalized, raw.atOrigin(), normalizedPieces);
            for (Segment piece : normalizedPieces) {
                if (piece.tokenId() >= 0) {
                    ids.add(piece.tokenId());
                    continue;
                }
                Piece whole = new Piece(piece.text(), piece.atOrigin());
                if (preTokenizer == null) {
                    model.tokenize(whole.text(), ids);
                } else {
                    for (Piece word : preTokenizer.apply(List.of(whole))) {
                        model.tokenize(word.text(), ids);
                    }
                }
            }
        }
        int[] out = ids.toArray();
        return addSpecialTokens && postProcessor != null ? postProcessor.process(out) : out;
    }

    /** Text of {@code ids}; unknown ids are ignored, as HF does. */
    public String decode(int[] ids, boolean skipSpecialTokens) {
        return decode(ids, 0, ids.length, skipSpecialTokens);
    }

    String decode(int[] ids, int from, int to, boolean skipSpecialTokens) {
        List<String> tokens = new ArrayList<>(to - from);
        for (int i = from; i < to; i++) {
            int id = ids[i];
            if (skipSpecialTokens && isSpecial(id)) {
                continue;
            }
            String token = idToToken(id);
            if (token != null) {
                tokens.add(token);
            }
        }
        return decoder == null ? String.join(" ", tokens) : decoder.decode(tokens);
    }

    /** True when the decoder joins {@code <0xNN>} tokens into characters (SentencePiece byte fallback). */
    boolean decodesByteFallback() {
        return decodesByteFallback;
    }

    /** Number of distinct tokens, added tokens included. */
    public int vocabSize() {
        return vocabSize;
    }

    /** The token string of {@code id}, or null if no token has that id. */
    public String idToToken(int id) {
        if (id >= 0 && id < addedById.length && addedById[id] != null) {
            return addedById[id];
        }
        return model.idToToken(id);
    }

    /** The id of a token string (added tokens first), or null if there is none. */
    public Integer tokenToId(String token) {
        Integer id = addedIds.get(token);
        return id != null ? id : model.vocab().get(token);
    }

    /** True for added tokens marked special (skipped by {@code decode(ids, true)}). */
    public boolean isSpecial(int id) {
        return id >= 0 && id < special.length && special[id];
    }

    public OptionalInt bosTokenId() {
        return idOf(bosToken);
    }

    public OptionalInt eosTokenId() {
        return idOf(eosToken);
    }

    /** The configured beginning-of-sequence token text, or null when tokenizer_config.json names none. */
    public String bosToken() {
        return bosToken;
    }

    /** The configured end-of-sequence token text, or null when tokenizer_config.json names none. */
    public String eosToken() {
        return eosToken;
    }

    private OptionalInt idOf(String token) {
        Integer id = token == null ? null : tokenToId(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    public Optional<ChatTemplate> chatTemplate() {
        return Optional.ofNullable(chatTemplate);
    }

    /** A decoder that turns a stream of generated ids into text that is final as soon as possible. */
    public IncrementalDecoder newIncrementalDecoder(boolean skipSpecialTokens) {
        return new IncrementalDecoder(this, skipSpecialTokens);
    }

    @Override
    public String toString() {
        return "Tokenizer[vocabSize=" + vocabSize + ", bos=" + bosToken + ", eos=" + eosToken + ", added="
                + Arrays.toString(added.tokens().stream().limit(8).map(AddedToken::content).toArray()) + "]";
    }
}
