package ai.punica.backend;

/** Memory of a backend's device, in bytes: what is free now and the total. */
public record DeviceMemory(long free, long total) {
    public DeviceMemory {
        if (free < 0 || total < free) {
            throw new IllegalArgumentException("device memory: " + free + " free of " + total);
        }
    }

    public long used() {
        return total - free;
    }
}
