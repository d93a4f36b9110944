package ai.punica.backend.cuda;

import java.lang.foreign.MemorySegment;

/**
 * One device as a backend sees it: the driver, the device's primary context, the compute stream every
 * operation enqueues on, what the device is (name, compute capability, SM count), the step-capture mode
 * (see {@link StepCapture}) and the thread that last made the context current. Not thread-safe, like the
 * backend.
 */
final class CudaContext {
    final Driver driver;
    final int device;
    final MemorySegment context;
    final int multiprocessors;
    final String deviceName;
    final int ccMajor;
    final int ccMinor;
    /** The compute stream: all work of the backend is ordered on it (a fork to a side stream joins back). */
    final MemorySegment stream;
    /** What the step's host code is doing on this context: eager, measured, recorded or replayed. */
    final StepCapture capture = new StepCapture();
    /**
     * The context each thread last made current through any CudaContext: with one engine per GPU in a
     * process, a thread (the one that builds the engines, say) may use backends on several devices in turn.
     */
    private static final ThreadLocal<Long> threadContext = new ThreadLocal<>();
    private boolean closed;

    CudaContext(int ordinal) {
        driver = Driver.get();
        int count = driver.deviceCount();
        if (ordinal < 0 || ordinal >= count) {
            throw new IllegalArgumentException("CUDA device " + ordinal + " does not exist; this machine has " + count);
        }
        device = driver.device(ordinal);
        context = driver.primaryContextRetain(device);
        driver.setCurrent(context);
        threadContext.set(context.address());
        multiprocessors = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        ccMajor = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        ccMinor = driver.deviceAttribute(device, Driver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        deviceName = driver.deviceName(device);
        if (ccMajor < 8) {
            throw new CudaException(deviceName + " has compute capability " + ccMajor + "." + ccMinor
                    + "; the CUDA backend needs 8.0 or newer (bf16)");
        }
        stream = driver.streamCreate(Driver.CU_STREAM_NON_BLOCKING);
    }

    /** Refuses a closed backend and makes the context current on a thread that has not used it last. */
    void enter() {
        if (closed) {
            throw new IllegalStateException("this CUDA backend is closed");
        }
        Long current = threadContext.get();
        if (current == null || current != context.address()) {
            driver.setCurrent(context);
            threadContext.set(context.address());
        }
    }

    /**
     * Makes the context current on this thread whatever this thread did before: for calls from threads that do
     * not own the backend (the adapter loader's virtual threads, whose carrier thread may differ from one call to
     * the next, and whoever closes an adapter), where {@link #enter}'s per-thread shortcut cannot be trusted.
     */
    void makeCurrent() {
        driver.setCurrent(context);
        threadContext.set(context.address());
    }

    boolean closed() {
        return closed;
    }

    /** From now on {@link #enter} refuses; what is still open is released by the backend's close. */
    void markClosed() {
        closed = true;
    }

    /** Waits for all work enqueued on the compute stream. */
    void synchronize() {
        driver.streamSynchronize(stream);
    }

    /** "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)". */
    String description() {
        return deviceName + " (sm_" + ccMajor + ccMinor + ", " + multiprocessors + " SMs)";
    }

    /** Destroys the stream and releases the primary context (last step of the backend's close). */
    void release() {
        driver.streamDestroy(stream);
        driver.primaryContextRelease(device);
    }
}
