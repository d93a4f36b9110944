package ai.punica.engine;

import ai.punica.tokenizer.IncrementalDecoder;
import java.util.List;

/**
 * Turns a request's tokens into streamed text: incremental detokenization (never half a character)
 * and stop strings. Text that could be the beginning of a stop string is held back until it is known
 * not to be, so a client never sees part of a stop string (as vLLM does).
 */
final class OutputProcessor {
    private final IncrementalDecoder decoder;
    private final List<String> stops;
    private final boolean keepStop;
    private final int holdBack;
    private final StringBuilder text = new StringBuilder();
    private int emitted;
    private String stopHit;

    /** @param keepStop the stop string stays at the end of the text (vLLM's include_stop_str_in_output) */
    OutputProcessor(IncrementalDecoder decoder, List<String> stops, boolean keepStop) {
        this.decoder = decoder;
        this.stops = stops;
        this.keepStop = keepStop;
        int longest = 0;
        for (String s : stops) {
            longest = Math.max(longest, s.length());
        }
        this.holdBack = Math.max(0, longest - 1);
    }

    /** Adds a token's text; returns the text that may be sent now. */
    String add(int token) {
        return add(token, true);
    }

    /**
     * Adds a token's text, looking for stop strings only when {@code lookForStops} (vLLM's min_tokens: not
     * before that many tokens; a stop string may still begin in the text before, as vLLM's search starts
     * a stop string's length back); returns the text that may be sent now.
     */
    String add(int token, boolean lookForStops) {
        int searchFrom = Math.max(0, text.length() - holdBack);
        text.append(decoder.add(token));
        if (lookForStops && !stops.isEmpty()) {
            int cut = -1;
            for (String s : stops) {
                int at = text.indexOf(s, searchFrom);
                if (at >= 0 && (cut < 0 || at < cut)) {
                    cut = at;
                    stopHit = s;
                }
            }
            if (cut >= 0) {
                int end = keepStop ? cut + stopHit.length() : cut;
                text.setLength(end);
                return takeUpTo(Math.max(end, emitted));
            }
        }
        int safe = Math.max(emitted, text.length() - holdBack);
        if (safe > emitted && safe < text.length() && Character.isHighSurrogate(text.charAt(safe - 1))) {
            safe--; // never split a surrogate pair
        }
        return takeUpTo(safe);
    }

    /** The stop string that ended the output, or null. */
    String stopHit() {
        return stopHit;
    }

    /** At the end: whatever was held back (no stop string came), plus the decoder's tail. */
    String finish() {
        if (stopHit == null) {
            text.append(decoder.flush());
        }
        return takeUpTo(text.length());
    }

    String text() {
        return text.toString();
    }

    private String takeUpTo(int end) {
        if (end <= emitted) {
            return "";
        }
        String out = text.substring(emitted, end);
        emitted = end;
        return out;
    }
}
