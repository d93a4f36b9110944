package ai.punica.lora;

/**
 * A request named an adapter that cannot be served: no registration and no source has it
 * ({@link #missing()}), or its files were found but did not load. The message is meant for the client.
 */
public final class AdapterUnavailableException extends RuntimeException {
    private final boolean missing;

    /** @param message names the adapter, for the client */
    AdapterUnavailableException(boolean missing, String message) {
        super(message);
        this.missing = missing;
    }

    /** True when nothing by this name exists (HTTP 404); false when it exists but failed to load. */
    public boolean missing() {
        return missing;
    }
}
