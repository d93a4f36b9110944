package ai.punica.tokenizer;

import ai.punica.jinja.TemplateException;
import ai.punica.json.JsonField;
import ai.punica.tokenizer.AddedVocabulary.AddedToken;
import ai.punica.tokenizer.AddedVocabulary.Segment;
import ai.punica.tokenizer.PreTokenizer.Piece;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

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
 *
 * <p>By default ({@link Compatibility#TRANSFORMERS}) it encodes as transformers 5's
 * {@code AutoTokenizer} does, which is what vLLM and {@code apply_chat_template} use and which differs
 * from the bare tokenizer.json in two ways (checked on real tokenizers, see
 * fixtures/templates/references.json):
 * <ul>
 *   <li>SentencePiece tokenizers of class {@code LlamaTokenizer} (Llama 2, Mistral) get transformers'
 *       pre-tokenizer instead of the file's normalizer: {@code Metaspace} that prepends "▁" to every
 *       text segment (between special tokens) when tokenizer_config's {@code legacy} is true or absent,
 *       and only to the start of the text when it is false ({@code add_prefix_space: false}: never).
 *       So {@code "<s>[INST]"} encodes as {@code <s> ▁[ INST ]} with legacy and {@code <s> [ INST ]}
 *       without, where the file alone gives {@code <s> ▁[ INST ]} in both cases.</li>
 *   <li>With special tokens, the BOS token of tokenizer_config is added in front unless
 *       {@code add_bos_token} is false, and EOS at the end if {@code add_eos_token} is true (Llama 3's
 *       file adds no BOS; transformers does).</li>
 * </ul>
 */
public final class Tokenizer {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Logger LOG = LoggerFactory.getLogger(Tokenizer.class);
    /** The special-token entries of tokenizer_config.json that transformers puts in a chat template's context. */
    private static final List<String> SPECIAL_TOKEN_KEYS = List.of("bos_token", "eos_token", "unk_token", "sep_token",
            "pad_token", "cls_token", "mask_token");

    /** Whose encoding rules {@link #load} follows. */
    public enum Compatibility {
        /** transformers 5's AutoTokenizer, as vLLM and apply_chat_template encode (the default). */
        TRANSFORMERS,
        /** The bare tokenizer.json, as the Rust tokenizers library runs it. */
        TOKENIZERS_LIBRARY
    }

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
    private final Map<String, Object> specialTokens;
    private final ChatTemplate chatTemplate;
    private final String chatTemplateProblem;
    private final boolean decodesByteFallback;

    private Tokenizer(JsonField root, JsonField config, Compatibility compatibility) {
        this(root, null, config, compatibility);
    }

    private Tokenizer(JsonField root, BpeModel.Tables tables, JsonField config, Compatibility compatibility) {
        boolean transformers = compatibility == Compatibility.TRANSFORMERS && config != null;
        String tokenizerClass = config == null ? "" : config.get("tokenizer_class").text("");
        if (transformers && (tokenizerClass.equals("LlamaTokenizer") || tokenizerClass.equals("LlamaTokenizerFast"))) {
            normalizer = null;
            String scheme = !config.get("add_prefix_space").bool(true) ? "never"
                    : config.get("legacy").bool(true) ? "always" : "first";
            preTokenizer = new PreTokenizer.Metaspace("\u2581", scheme, false);
        } else {
            normalizer = root.get("normalizer").optional(Normalizer::parse);
            preTokenizer = root.get("pre_tokenizer").optional(PreTokenizer::parse);
        }
        model = BpeModel.parse(root.get("model"), tables);
        decoder = root.get("decoder").optional(Decoder::parse);
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
        PostProcessor fileProcessor = root.get("post_processor").optional(PostProcessor::parse);
        boolean addBos = transformers && bosToken != null && config.get("add_bos_token").bool(true);
        boolean addEos = transformers && eosToken != null && config.get("add_eos_token").bool(false);
        postProcessor = addBos || addEos ? new PostProcessor.Template(idsOf(addBos ? bosToken : null),
                idsOf(addEos ? eosToken : null)) : fileProcessor;
        specialTokens = config == null ? Map.of() : specialTokens(config, tokenizerClass);

        String template = config == null ? null : chatTemplateSource(config.get("chat_template"));
        ChatTemplate compiled = null;
        String problem = null;
        if (template != null) {
            try {
                compiled = ChatTemplate.compile(template, specialTokens);
            } catch (TemplateException e) {
                problem = "the chat template of tokenizer_config.json cannot be compiled: " + e.getMessage();
            }
        }
        chatTemplate = compiled;
        chatTemplateProblem = problem;
    }

    private int[] idsOf(String token) {
        Integer id = token == null ? null : tokenToId(token);
        return id == null ? new int[0] : new int[] {id};
    }

    /**
     * What transformers 5's {@code special_tokens_map} gives a chat template: the named special tokens
     * that are set, the {@code extra_special_tokens} entries and Gemma's class default {@code mask_token}
     * (not {@code additional_special_tokens}).
     */
    private static Map<String, Object> specialTokens(JsonField config, String tokenizerClass) {
        Map<String, Object> tokens = new java.util.LinkedHashMap<>();
        for (String key : SPECIAL_TOKEN_KEYS) {
            String text = specialTokenText(config.get(key));
            if (text != null) {
                tokens.put(key, text);
            }
        }
        if (tokenizerClass.startsWith("GemmaTokenizer")) {
            tokens.putIfAbsent("mask_token", "<mask>");
        }
        JsonField extra = config.get("extra_special_tokens");
        if (!extra.isAbsent() && extra.node().isObject()) {
            extra.node().fieldNames().forEachRemaining(name -> {
                String text = specialTokenText(extra.get(name));
                if (text != null) {
                    tokens.put(name, text);
                }
            });
        }
        return Map.copyOf(tokens);
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
        return load(modelDir, Compatibility.TRANSFORMERS);
    }

    /**
     * As {@link #load(Path)}, encoding as {@code compatibility} says. A chat template that does not
     * compile does not fail the load: {@link #chatTemplate()} is then empty and
     * {@link #chatTemplateProblem()} says why (logged once here).
     */
    public static Tokenizer load(Path modelDir, Compatibility compatibility) {
        Path tokenizerFile = modelDir.resolve("tokenizer.json");
        Path gzipped = modelDir.resolve("tokenizer.json.gz");
        Path configFile = modelDir.resolve("tokenizer_config.json");
        boolean plain = Files.isRegularFile(tokenizerFile);
        if (!plain && !Files.isRegularFile(gzipped)) {
            throw new TokenizerException(tokenizerFile + " does not exist; a model directory needs a HuggingFace "
                    + "tokenizer.json (a slow-tokenizer-only model must first be converted with transformers)");
        }
        Path source = plain ? tokenizerFile : gzipped;
        try (InputStream in = plain ? Files.newInputStream(tokenizerFile)
                : new java.util.zip.GZIPInputStream(Files.newInputStream(gzipped), 1 << 16)) {
            TokenizerJsonReader.Result parsed;
            try {
                parsed = TokenizerJsonReader.read(new java.io.BufferedInputStream(in, 1 << 16), source.toString(), JSON);
            } catch (JsonProcessingException e) {
                throw new TokenizerException(source + ": not valid JSON: " + e.getOriginalMessage() + " (line "
                        + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")", e);
            }
            String configJson = Files.isRegularFile(configFile) ? Files.readString(configFile) : null;
            Tokenizer tokenizer = new Tokenizer(JsonField.root(source.toString(), parsed.root(), TokenizerException::new), parsed.tables(),
                    configJson == null ? null : readJson(configJson, configFile.toString()), compatibility);
            tokenizer.chatTemplateProblem().ifPresent(problem -> LOG.warn("{}: {}; chat requests for this model will "
                    + "be refused, completions work", configFile, problem));
            return tokenizer;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read tokenizer files in " + modelDir, e);
        }
    }

    /** Builds a tokenizer from the text of tokenizer.json and (nullable) tokenizer_config.json. */
    public static Tokenizer fromJson(String tokenizerJson, String tokenizerConfigJson) {
        return new Tokenizer(readJson(tokenizerJson, "tokenizer.json"),
                tokenizerConfigJson == null ? null : readJson(tokenizerConfigJson, "tokenizer_config.json"),
                Compatibility.TRANSFORMERS);
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

    /** The model's chat template; empty when tokenizer_config.json has none or it does not compile. */
    public Optional<ChatTemplate> chatTemplate() {
        return Optional.ofNullable(chatTemplate);
    }

    /** Why the model's chat template cannot be used (a syntax error, with its line and column), if it cannot. */
    public Optional<String> chatTemplateProblem() {
        return Optional.ofNullable(chatTemplateProblem);
    }

    /** Another template rendered with this tokenizer's special tokens (as transformers' {@code chat_template=}). */
    public ChatTemplate chatTemplate(String source) {
        return ChatTemplate.compile(source, specialTokens);
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
