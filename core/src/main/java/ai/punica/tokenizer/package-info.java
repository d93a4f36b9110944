/**
 * Text in and out of the model: a pure-Java HuggingFace {@code tokenizer.json} tokenizer
 * ({@link ai.punica.tokenizer.Tokenizer}), streaming detokenization
 * ({@link ai.punica.tokenizer.IncrementalDecoder}) and chat templates
 * ({@link ai.punica.tokenizer.ChatTemplate}, on the Jinja2 interpreter of {@code ai.punica.jinja}).
 *
 * <pre>
 * request messages ─► ChatTemplate.render ─► prompt text ─► Tokenizer.encode(prompt, false) ─► ids
 * generated ids ─► IncrementalDecoder.add (whole characters only) ─► SSE deltas ─► flush at the end
 * </pre>
 *
 * <p>A rendered chat prompt already contains the BOS token the template writes, so encode it with
 * {@code addSpecialTokens = false}, as transformers' {@code apply_chat_template} does.
 *
 * <p>Encoding follows transformers 5's {@code AutoTokenizer} by default (which is what vLLM does),
 * the Rust {@code tokenizers} library on the bare file with
 * {@link ai.punica.tokenizer.Tokenizer.Compatibility#TOKENIZERS_LIBRARY}; the two differ for
 * SentencePiece tokenizers of class LlamaTokenizer (the {@code legacy} flag) and in which special
 * tokens are added (see {@link ai.punica.tokenizer.Tokenizer}). {@code clean_up_tokenization_spaces}
 * is not applied on decode.
 */
package ai.punica.tokenizer;
