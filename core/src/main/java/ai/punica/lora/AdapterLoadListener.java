package ai.punica.lora;

/** Told the time of each adapter load stage (metrics). Called on loader threads and the engine thread. */
@FunctionalInterface
public interface AdapterLoadListener {
    void loaded(LoadStage stage, String adapter, long nanos);
}
