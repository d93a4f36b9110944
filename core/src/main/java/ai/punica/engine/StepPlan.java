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
     */
    record Entry(Sequence sequence, int chunk, int logitRow) {
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
