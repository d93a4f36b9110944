package ai.punica.server;

import ai.punica.server.OpenAiJson.DetokenizeResult;
import ai.punica.server.OpenAiJson.TokenizeResult;
import ai.punica.server.OpenAiRequests.DetokenizeBody;
import ai.punica.server.OpenAiRequests.TokenizeBody;
import ai.punica.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.List;

/**
 * vLLM's {@code /tokenize} and {@code /detokenize}: the token ids a prompt (or chat messages, through
 * the chat template) becomes, exactly as a generation request would run it, and the text of ids.
 */
final class Tokenization {
    private final RequestParser parser;
    private final Tokenizer tokenizer;
    private final TokenText tokenText;
    private final int maxModelLen;

    Tokenization(RequestParser parser, Tokenizer tokenizer, TokenText tokenText, int maxModelLen) {
        this.parser = parser;
        this.tokenizer = tokenizer;
        this.tokenText = tokenText;
        this.maxModelLen = maxModelLen;
    }

    TokenizeResult tokenize(TokenizeBody body) {
        checkModel(body.model());
        int[] ids;
        if (body.messages() != null) {
            if (body.prompt() != null) {
                throw ApiException.badRequest("prompt", "Send either `prompt` or `messages`, not both.");
            }
            ids = parser.chatPrompt(body.messages(), !Boolean.FALSE.equals(body.addGenerationPrompt()),
                    body.chatTemplateKwargs(), Boolean.TRUE.equals(body.addSpecialTokens()));
        } else if (body.prompt() != null) {
            ids = tokenizer.encode(body.prompt(), !Boolean.FALSE.equals(body.addSpecialTokens()));
        } else {
            throw ApiException.badRequest("prompt", "`prompt` (or chat `messages`) is required.");
        }
        List<Integer> tokens = new ArrayList<>(ids.length);
        List<String> strs = Boolean.TRUE.equals(body.returnTokenStrs()) ? new ArrayList<>(ids.length) : null;
        for (int id : ids) {
            tokens.add(id);
            if (strs != null) {
                strs.add(tokenText.of(id));
            }
        }
        return new TokenizeResult(ids.length, maxModelLen, tokens, strs);
    }

    DetokenizeResult detokenize(DetokenizeBody body) {
        checkModel(body.model());
        if (body.tokens() == null) {
            throw ApiException.badRequest("tokens", "`tokens` is required.");
        }
        int[] ids = new int[body.tokens().size()];
        for (int i = 0; i < ids.length; i++) {
            Integer t = body.tokens().get(i);
            if (t == null || t < 0 || t >= tokenizer.vocabSize()) {
                throw ApiException.badRequest("tokens", "token id " + t + " at position " + i + " is outside the "
                        + "vocabulary [0, " + tokenizer.vocabSize() + ").");
            }
            ids[i] = t;
        }
        return new DetokenizeResult(tokenizer.decode(ids, false));
    }

    /** {@code model} is optional; when sent it must name the base model or an adapter (they share one tokenizer). */
    private void checkModel(String model) {
        if (model != null) {
            parser.adapterOf(model);
        }
    }
}
