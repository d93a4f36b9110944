package ai.punica.cluster;

import java.util.List;
import java.util.Locale;

/**
 * Which engine takes a request: a pure function of the engines' states (and, for round-robin, of the
 * previous choice). Every policy only picks an engine with room ({@link EngineState#hasRoomFor}); none with
 * room gives -1 and the request waits.
 */
public sealed interface PlacementPolicy {

    /**
     * @param engines  the engines' states, by index
     * @param request  the request to place
     * @param previous the index chosen last time (-1 at first)
     * @return the chosen engine's index, or -1 when no engine has room
     */
    int choose(List<EngineState> engines, Placement request, int previous);

    /** The name on the command line and in metrics. */
    default String name() {
        return switch (this) {
            case Consolidate c -> "consolidate";
            case LeastLoaded l -> "least-loaded";
            case RoundRobin r -> "round-robin";
        };
    }

    /**
     * Punica's policy (§5, G1): the engine with the most running requests that still has room, so that
     * load piles onto few engines and the others stay empty (and can be released). Ties go to an engine
     * that has the request's adapter in a device slot already, then to the lowest index.
     */
    record Consolidate() implements PlacementPolicy {
        @Override
        public int choose(List<EngineState> engines, Placement request, int previous) {
            return best(engines, request, +1);
        }
    }

    /** The engine with the fewest running requests that has room (ties as consolidate's): spreads load. */
    record LeastLoaded() implements PlacementPolicy {
        @Override
        public int choose(List<EngineState> engines, Placement request, int previous) {
            return best(engines, request, -1);
        }
    }

    /** The next engine after the previous choice that has room, in index order, wrapping around. */
    record RoundRobin() implements PlacementPolicy {
        @Override
        public int choose(List<EngineState> engines, Placement request, int previous) {
            int n = engines.size();
            for (int k = 1; k <= n; k++) {
                int i = Math.floorMod(previous + k, n);
                if (engines.get(i).hasRoomFor(request.tokens())) {
                    return i;
                }
            }
            return -1;
        }
    }

    /** Every policy, one of each; {@link #named} looks a name up here. */
    List<PlacementPolicy> ALL = List.of(new Consolidate(), new LeastLoaded(), new RoundRobin());

    List<String> NAMES = ALL.stream().map(PlacementPolicy::name).toList();

    /** The policy named {@code name} (one of {@link #NAMES}), or an error that lists them. */
    static PlacementPolicy named(String name) {
        String wanted = name.toLowerCase(Locale.ROOT);
        return ALL.stream().filter(p -> p.name().equals(wanted)).findFirst().orElseThrow(() ->
                new IllegalArgumentException("unknown placement policy '" + name + "'; use one of "
                        + String.join(", ", NAMES)));
    }

    /**
     * The engine with room whose running count is largest ({@code sign} +1) or smallest (-1); ties to an
     * engine holding the adapter, then the lowest index.
     */
    private static int best(List<EngineState> engines, Placement request, int sign) {
        int chosen = -1;
        for (int i = 0; i < engines.size(); i++) {
            EngineState e = engines.get(i);
            if (!e.hasRoomFor(request.tokens())) {
                continue;
            }
            if (chosen < 0) {
                chosen = i;
                continue;
            }
            EngineState c = engines.get(chosen);
            int byLoad = sign * Integer.compare(e.running(), c.running());
            if (byLoad > 0 || byLoad == 0 && e.hasAdapter(request.adapter()) && !c.hasAdapter(request.adapter())) {
                chosen = i;
            }
        }
        return chosen;
    }
}
