package ai.punica.tokenizer;

import ai.punica.json.JsonField;
import java.util.ArrayList;
import java.util.List;

/**
 * The tokenizer.json {@code post_processor}, applied when special tokens are requested: for a
 * single sequence it adds e.g. Llama's {@code <s>} in front. Pair templates are not needed for
 * serving and are ignored.
 */
sealed interface PostProcessor {

    int[] process(int[] ids);

    record Sequence(List<PostProcessor> processors) implements PostProcessor {
        @Override
        public int[] process(int[] ids) {
            for (PostProcessor p : processors) {
                ids = p.process(ids);
            }
            return ids;
        }
    }

    /** ByteLevel only adjusts offsets; ids are unchanged. */
    record Identity() implements PostProcessor {
        @Override
        public int[] process(int[] ids) {
            return ids;
        }
    }

    /** Ids before and after the sequence ("$A") of a TemplateProcessing "single", BERT or RoBERTa template. */
    record Template(int[] before, int[] after) implements PostProcessor {
        @Override
        public int[] process(int[] ids) {
            int[] out = new int[before.length + ids.length + after.length];
            System.arraycopy(before, 0, out, 0, before.length);
            System.arraycopy(ids, 0, out, before.length, ids.length);
            System.arraycopy(after, 0, out, before.length + ids.length, after.length);
            return out;
        }
    }

    static PostProcessor parse(JsonField json) {
        return switch (json.type()) {
            case "Sequence" -> new Sequence(json.list("processors", PostProcessor::parse));
            case "ByteLevel" -> new Identity();
            case "TemplateProcessing" -> parseTemplate(json);
            case "BertProcessing", "RobertaProcessing" -> new Template(
                    new int[] {json.get("cls").at(1).intValue()}, new int[] {json.get("sep").at(1).intValue()});
            default -> throw json.unsupported("post_processor",
                    "TemplateProcessing, ByteLevel, Sequence, BertProcessing, RobertaProcessing");
        };
    }

    private static Template parseTemplate(JsonField json) {
        List<Integer> before = new ArrayList<>();
        List<Integer> after = new ArrayList<>();
        boolean seenSequence = false;
        JsonField specials = json.get("special_tokens");
        for (JsonField item : json.get("single").elements()) {
            if (item.has("Sequence")) {
                seenSequence = true;
            } else if (item.has("SpecialToken")) {
                String name = item.get("SpecialToken").get("id").text();
                JsonField special = specials.get(name);
                if (special.isAbsent()) {
                    throw item.error("special token \"" + name + "\" is not listed in special_tokens");
                }
                for (JsonField id : special.get("ids").elements()) {
                    (seenSequence ? after : before).add(id.intValue());
                }
            } else {
                throw item.error("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
            }
        }
        return new Template(before.stream().mapToInt(Integer::intValue).toArray(),
                after.stream().mapToInt(Integer::intValue).toArray());
    }
}
