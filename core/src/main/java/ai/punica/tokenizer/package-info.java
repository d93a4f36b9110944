/**
 * Text in and out of the model: a pure-Java HuggingFace {@code tokenizer.json} tokenizer
 * ({@link ai.punica.tokenizer.Tokenizer}), streaming detokenization
 * ({@link ai.punica.tokenizer.IncrementalDecoder}) and chat templates
 * ({@link ai.punica.tokenizer.ChatTemplate}, a Jinja2 subset).
 *
 * <pre>
 * request messages ─► ChatTemplate.render ─► prompt text ─► Tokenizer.encode(prompt, false) ─► ids
 * generated ids ─► IncrementalDecoder.add (whole characters only) ─► SSE deltas ─► flush at the end
 * </pre>
 *
 * <p>A rendered chat prompt already contains the BOS token the template writes, so encode it with
 * {@code addSpecialTokens = false}, as transformers' {@code apply_chat_template} does.
 *
 * <p>Semantics follow the Rust {@code tokenizers} library (0.23, checked against its output on the
 * committed reference corpora), not transformers' Python wrappers: in particular
 * {@code clean_up_tokenization_spaces} is not applied on decode.
 */
package ai.punica.tokenizer;
