package ai.punica.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Each policy as a table: engine states and a request → the engine chosen. */
class PlacementPolicyTest {
    private static final int PAGE = 16;

    /** An engine with {@code running} of at most 8 requests, {@code free} KV pages and these adapters. */
    private static EngineState engine(int running, int free, String... adapters) {
        return new EngineState(running, 8, free, PAGE, Set.of(adapters), true);
    }

    private static EngineState down(int running, int free) {
        return new EngineState(running, 8, free, PAGE, Set.of(), false);
    }

    private record Row(String what, List<EngineState> engines, Placement request, int previous, int consolidate,
                       int leastLoaded, int roundRobin) {
    }

    private static final Placement SMALL = new Placement(null, 20); // 2 pages (20 tokens + the next one)
    private static final Placement SORT = new Placement("sort", 20);

    private static List<Row> table() {
        List<Row> rows = new ArrayList<>();
        rows.add(new Row("all empty: the lowest index", List.of(engine(0, 100), engine(0, 100), engine(0, 100)),
                SMALL, -1, 0, 0, 0));
        rows.add(new Row("the busiest with room", List.of(engine(2, 100), engine(5, 100), engine(1, 100)),
                SMALL, -1, 1, 2, 0));
        rows.add(new Row("a full batch has no room", List.of(engine(2, 100), engine(8, 100), engine(1, 100)),
                SMALL, 0, 0, 2, 2));
        rows.add(new Row("too few free pages is no room", List.of(engine(3, 1), engine(2, 2), engine(0, 100)),
                SMALL, 1, 1, 2, 2));
        rows.add(new Row("ties go to the adapter's engine", List.of(engine(3, 100), engine(3, 100, "sort"),
                engine(1, 100), engine(1, 100, "sort")), SORT, -1, 1, 3, 0));
        rows.add(new Row("load before the adapter", List.of(engine(4, 100), engine(3, 100, "sort")), SORT, 1, 0, 1,
                0));
        rows.add(new Row("an unavailable engine is skipped", List.of(down(5, 100), engine(1, 100), engine(0, 100)),
                SMALL, 1, 1, 2, 2));
        rows.add(new Row("round-robin wraps around", List.of(engine(1, 100), engine(1, 100), engine(1, 100)),
                SMALL, 2, 0, 0, 0));
        rows.add(new Row("nobody has room", List.of(engine(8, 100), engine(2, 1), down(0, 100)), SMALL, -1, -1, -1,
                -1));
        rows.add(new Row("exactly enough pages", List.of(engine(0, 2)), new Placement(null, 31), -1, 0, 0, 0));
        rows.add(new Row("one token short of a page", List.of(engine(0, 2)), new Placement(null, 32), -1, -1, -1,
                -1));
        return rows;
    }

    @Test
    void consolidatePicksTheBusiestEngineWithRoom() {
        for (Row r : table()) {
            assertThat(new PlacementPolicy.Consolidate().choose(r.engines(), r.request(), r.previous()))
                    .as(r.what()).isEqualTo(r.consolidate());
        }
    }

    @Test
    void leastLoadedPicksTheIdlestEngineWithRoom() {
        for (Row r : table()) {
            assertThat(new PlacementPolicy.LeastLoaded().choose(r.engines(), r.request(), r.previous()))
                    .as(r.what()).isEqualTo(r.leastLoaded());
        }
    }

    @Test
    void roundRobinPicksTheNextEngineWithRoom() {
        for (Row r : table()) {
            assertThat(new PlacementPolicy.RoundRobin().choose(r.engines(), r.request(), r.previous()))
                    .as(r.what()).isEqualTo(r.roundRobin());
        }
    }

    @Test
    void policiesAreNamedOnTheCommandLine() {
        for (String name : PlacementPolicy.NAMES) {
            assertThat(PlacementPolicy.named(name).name()).isEqualTo(name);
        }
        assertThatThrownBy(() -> PlacementPolicy.named("busiest"))
                .hasMessage("unknown placement policy 'busiest'; use one of consolidate, least-loaded, round-robin");
    }
}
