package ai.punica.lora;

/**
 * A request named an adapter that cannot be served: no registration and no source has it
 * ({@link #missing()}), or its files were found but did not load. The message is meant for the client.
 */
public final class AdapterUnavailableException extends RuntimeException {
    private final String adapter;
    private final boolean missing;

    AdapterUnavailableException(String adapter, boolean missing, String message) {
        super(message);
        this.adapter = adapter;
        this.missing = missing;
    }

    public String adapter() {
        return adapter;
    }

    /** True when nothing by this name exists (HTTP 404); false when it exists but failed to load. */
    public boolean missing() {
        return missing;
    }
}
