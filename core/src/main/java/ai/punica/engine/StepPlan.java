package ai.punica.engine;

import java.util.List;

/**
 * One engine iteration, decided by the {@link Scheduler} and read-only afterwards: per scheduled
 * sequence, in row order, how many of its tokens run and whether it samples. The {@link ModelRunner}
 * turns it into rows and backend calls.
 */
record StepPlan(List<Entry> entries) {

    StepPlan {
        entries = List.copyOf(entries);
    }

    /**
     * @param chunk     tokens of the sequence fed this step, starting at its {@code computed} count
     * @param logitRow  index into the batch's logit rows if this step samples the sequence's next
     *                  token, else -1
     * @param promptLogitRow      the first of the logit rows that this step returns for the sequence's
     *                            {@code prompt_logprobs} (before its sampled row, if any), or -1
     * @param promptLogitCount    how many: positions {@code promptLogitPosition ..} of the prompt, each
     *                            before the prompt's last token; 0 for none
     * @param promptLogitPosition the position of the first of them
     */
    record Entry(Sequence sequence, int chunk, int logitRow, int promptLogitRow, int promptLogitCount,
                 int promptLogitPosition) {

        Entry(Sequence sequence, int chunk, int logitRow) {
            this(sequence, chunk, logitRow, -1, 0, 0);
        }
    }

    int prefillTokens() {
        int n = 0;
        for (Entry e : entries) {
            if (e.chunk() > 1 || e.sequence().computed < e.sequence().promptLength()) {
                n += e.chunk();
            }
        }
        return n;
    }
}
