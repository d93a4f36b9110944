package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.List;

/**
 * Hand-written FFM bindings to the CUDA driver API ({@code libcuda.so.1}). Every call checks its
 * CUresult and throws {@link CudaException} naming the call and the driver's error string. Handles
 * (context, stream, module, function, event, graph) are opaque {@link MemorySegment} addresses; device
 * pointers are {@code long}.
 */
final class Driver {
    private static final Linker LINKER = Linker.nativeLinker();

    // Values of the driver API's enums (cuda.h) that the backend passes.
    static final int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    static final int CU_STREAM_NON_BLOCKING = 1;
    static final int CU_EVENT_DISABLE_TIMING = 2;
    static final int CU_MEMHOSTALLOC_WRITECOMBINED = 4;

    private static volatile Driver instance;
    private static volatile Throwable loadFailure;

    private final SymbolLookup lib;
    private final MethodHandle cuInit, cuDeviceGetCount, cuDeviceGet, cuDeviceGetAttribute, cuDeviceGetName,
            cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxSetCurrent, cuMemGetInfo,
            cuMemAlloc, cuMemFree, cuMemAllocHost, cuMemHostAlloc, cuMemFreeHost, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync,
            cuMemcpyDtoDAsync, cuMemsetD32Async, cuStreamCreate, cuStreamDestroy, cuStreamSynchronize,
            cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy, cuEventQuery,
            cuStreamWaitEvent,
            cuModuleLoadData, cuModuleUnload, cuModuleGetFunction, cuLaunchKernel, cuLaunchKernelEx, cuFuncSetAttribute,
            cuStreamBeginCapture, cuStreamEndCapture, cuGraphInstantiate, cuGraphLaunch, cuGraphDestroy,
            cuGraphExecDestroy, cuGetErrorString, cuGetErrorName;

    private Driver() {
        lib = NativeLibraries.load("the CUDA driver library", List.of("libcuda.so.1", "libcuda.so"), List.of());
        cuInit = h("cuInit", JAVA_INT);
        cuDeviceGetCount = h("cuDeviceGetCount", ADDRESS);
        cuDeviceGet = h("cuDeviceGet", ADDRESS, JAVA_INT);
        cuDeviceGetAttribute = h("cuDeviceGetAttribute", ADDRESS, JAVA_INT, JAVA_INT);
        cuDeviceGetName = h("cuDeviceGetName", ADDRESS, JAVA_INT, JAVA_INT);
        cuDevicePrimaryCtxRetain = h("cuDevicePrimaryCtxRetain", ADDRESS, JAVA_INT);
        cuDevicePrimaryCtxRelease = h("cuDevicePrimaryCtxRelease_v2", JAVA_INT);
        cuCtxSetCurrent = h("cuCtxSetCurrent", ADDRESS);
        cuMemGetInfo = h("cuMemGetInfo_v2", ADDRESS, ADDRESS);
        cuMemAlloc = h("cuMemAlloc_v2", ADDRESS, JAVA_LONG);
        cuMemFree = h("cuMemFree_v2", JAVA_LONG);
        cuMemAllocHost = h("cuMemAllocHost_v2", ADDRESS, JAVA_LONG);
        cuMemHostAlloc = h("cuMemHostAlloc", ADDRESS, JAVA_LONG, JAVA_INT);
        cuMemFreeHost = h("cuMemFreeHost", ADDRESS);
        cuMemcpyHtoDAsync = h("cuMemcpyHtoDAsync_v2", JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS);
        cuMemcpyDtoHAsync = h("cuMemcpyDtoHAsync_v2", ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS);
        cuMemcpyDtoDAsync = h("cuMemcpyDtoDAsync_v2", JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS);
        cuMemsetD32Async = h("cuMemsetD32Async", JAVA_LONG, JAVA_INT, JAVA_LONG, ADDRESS);
        cuStreamCreate = h("cuStreamCreate", ADDRESS, JAVA_INT);
        cuStreamDestroy = h("cuStreamDestroy_v2", ADDRESS);
        cuStreamSynchronize = h("cuStreamSynchronize", ADDRESS);
        cuEventCreate = h("cuEventCreate", ADDRESS, JAVA_INT);
        cuEventRecord = h("cuEventRecord", ADDRESS, ADDRESS);
        cuEventSynchronize = h("cuEventSynchronize", ADDRESS);
        cuEventElapsedTime = h("cuEventElapsedTime_v2", ADDRESS, ADDRESS, ADDRESS);
        cuEventDestroy = h("cuEventDestroy_v2", ADDRESS);
        cuEventQuery = h("cuEventQuery", ADDRESS);
        cuStreamWaitEvent = h("cuStreamWaitEvent", ADDRESS, ADDRESS, JAVA_INT);
        cuModuleLoadData = h("cuModuleLoadData", ADDRESS, ADDRESS);
        cuModuleUnload = h("cuModuleUnload", ADDRESS);
        cuModuleGetFunction = h("cuModuleGetFunction", ADDRESS, ADDRESS, ADDRESS);
        cuLaunchKernel = h("cuLaunchKernel", ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT,
                JAVA_INT, ADDRESS, ADDRESS, ADDRESS);
        cuLaunchKernelEx = h("cuLaunchKernelEx", ADDRESS, ADDRESS, ADDRESS, ADDRESS);
        cuFuncSetAttribute = h("cuFuncSetAttribute", ADDRESS, JAVA_INT, JAVA_INT);
        cuStreamBeginCapture = h("cuStreamBeginCapture_v2", ADDRESS, JAVA_INT);
        cuStreamEndCapture = h("cuStreamEndCapture", ADDRESS, ADDRESS);
        cuGraphInstantiate = h("cuGraphInstantiateWithFlags", ADDRESS, ADDRESS, JAVA_LONG);
        cuGraphLaunch = h("cuGraphLaunch", ADDRESS, ADDRESS);
        cuGraphDestroy = h("cuGraphDestroy", ADDRESS);
        cuGraphExecDestroy = h("cuGraphExecDestroy", ADDRESS);
        cuGetErrorString = h("cuGetErrorString", JAVA_INT, ADDRESS);
        cuGetErrorName = h("cuGetErrorName", JAVA_INT, ADDRESS);
    }

    /** The driver, loaded and initialised once; throws {@link CudaException} where it cannot be. */
    static Driver get() {
        Driver d = instance;
        if (d != null) {
            return d;
        }
        synchronized (Driver.class) {
            if (instance == null) {
                if (loadFailure != null) {
                    throw new CudaException("the CUDA driver could not be loaded: " + loadFailure.getMessage(), loadFailure);
                }
                try {
                    Driver created = new Driver();
                    created.check(created.callInt(created.cuInit, 0), "cuInit");
                    instance = created;
                } catch (Throwable t) {
                    loadFailure = t;
                    throw t instanceof CudaException ce ? ce : new CudaException("the CUDA driver could not be loaded: " + t, t);
                }
            }
            return instance;
        }
    }

    private MethodHandle h(String name, MemoryLayout... args) {
        MemorySegment symbol = lib.find(name).orElseThrow(() -> new CudaException("libcuda has no symbol " + name
                + "; the driver is older than this backend needs (CUDA 12.8+ driver)"));
        return LINKER.downcallHandle(symbol, FunctionDescriptor.of(JAVA_INT, args));
    }

    private int callInt(MethodHandle h, Object... args) {
        try {
            return (int) h.invokeWithArguments(args);
        } catch (Throwable t) {
            throw new CudaException("native call failed: " + t, t);
        }
    }

    void check(int result, String call) {
        if (result != 0) {
            throw new CudaException(call + " failed: " + errorText(result));
        }
    }

    String errorText(int result) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            String name = "CUDA_ERROR_" + result;
            if ((int) cuGetErrorName.invokeExact(result, p) == 0) {
                name = p.get(ADDRESS, 0).reinterpret(256).getString(0);
            }
            String text = "";
            if ((int) cuGetErrorString.invokeExact(result, p) == 0) {
                text = p.get(ADDRESS, 0).reinterpret(1024).getString(0);
            }
            return name + " (" + result + "): " + text;
        } catch (Throwable t) {
            return "CUresult " + result;
        }
    }

    // ---- calls ------------------------------------------------------------------------------------

    /** One driver call: {@code (int) handle.invokeExact(...)}, returning its CUresult. */
    @FunctionalInterface
    private interface Call {
        int invoke() throws Throwable;
    }

    /** A driver call that writes its result through a pointer to {@code out}. */
    @FunctionalInterface
    private interface OutCall {
        int invoke(MemorySegment out) throws Throwable;
    }

    /** Runs {@code c} and throws a {@link CudaException} naming {@code name} unless it returned CUDA_SUCCESS. */
    private void call(String name, Call c) {
        int rc;
        try {
            rc = c.invoke();
        } catch (Throwable t) {
            throw wrap(name, t);
        }
        check(rc, name);
    }

    /** Runs {@code c} with a fresh {@code layout}-sized out-parameter, checked as {@link #call}; returns the parameter. */
    private MemorySegment out(Arena arena, MemoryLayout layout, String name, OutCall c) {
        MemorySegment p = arena.allocate(layout);
        call(name, () -> c.invoke(p));
        return p;
    }

    private int outInt(String name, OutCall c) {
        try (Arena arena = Arena.ofConfined()) {
            return out(arena, JAVA_INT, name, c).get(JAVA_INT, 0);
        }
    }

    private MemorySegment outAddress(String name, OutCall c) {
        try (Arena arena = Arena.ofConfined()) {
            return out(arena, ADDRESS, name, c).get(ADDRESS, 0);
        }
    }

    // ---- devices and contexts ---------------------------------------------------------------------

    int deviceCount() {
        return outInt("cuDeviceGetCount", n -> (int) cuDeviceGetCount.invokeExact(n));
    }

    int device(int ordinal) {
        return outInt("cuDeviceGet(" + ordinal + ")", d -> (int) cuDeviceGet.invokeExact(d, ordinal));
    }

    int deviceAttribute(int device, int attribute) {
        return outInt("cuDeviceGetAttribute(" + attribute + ")",
                v -> (int) cuDeviceGetAttribute.invokeExact(v, attribute, device));
    }

    String deviceName(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(256);
            call("cuDeviceGetName", () -> (int) cuDeviceGetName.invokeExact(buf, 256, device));
            return buf.getString(0);
        }
    }

    MemorySegment primaryContextRetain(int device) {
        return outAddress("cuDevicePrimaryCtxRetain", ctx -> (int) cuDevicePrimaryCtxRetain.invokeExact(ctx, device));
    }

    void primaryContextRelease(int device) {
        call("cuDevicePrimaryCtxRelease", () -> (int) cuDevicePrimaryCtxRelease.invokeExact(device));
    }

    void setCurrent(MemorySegment ctx) {
        call("cuCtxSetCurrent", () -> (int) cuCtxSetCurrent.invokeExact(ctx));
    }

    /** {free, total} bytes of device memory. */
    long[] memInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(JAVA_LONG);
            MemorySegment total = arena.allocate(JAVA_LONG);
            call("cuMemGetInfo", () -> (int) cuMemGetInfo.invokeExact(free, total));
            return new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        }
    }

    // ---- memory -----------------------------------------------------------------------------------

    long memAlloc(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(JAVA_LONG);
            int rc;
            try {
                rc = (int) cuMemAlloc.invokeExact(p, Math.max(bytes, 1L));
            } catch (Throwable t) {
                throw wrap("cuMemAlloc", t);
            }
            if (rc != 0) {
                long[] info = memInfo();
                throw new CudaException("cuMemAlloc(" + bytes + " bytes) failed: " + errorText(rc) + "; device has "
                        + (info[0] >> 20) + " MiB free of " + (info[1] >> 20) + " MiB");
            }
            return p.get(JAVA_LONG, 0);
        }
    }

    void memFree(long ptr) {
        call("cuMemFree", () -> (int) cuMemFree.invokeExact(ptr));
    }

    /** Page-locked host memory the device can copy from and to asynchronously. */
    MemorySegment memAllocHost(long bytes) {
        return outAddress("cuMemAllocHost(" + bytes + " bytes)", p -> (int) cuMemAllocHost.invokeExact(p, bytes))
                .reinterpret(bytes);
    }

    /**
     * Page-locked host memory that the CPU writes through write-combining buffers, bypassing its caches
     * ({@code CU_MEMHOSTALLOC_WRITECOMBINED}): the device reads it without snooping the CPU's caches. The CPU must
     * only write it (reads are uncached, many times slower). Only {@code HostCopyBench} uses it: on an H200 (PCIe 5
     * x16) an 80 MB copy from it took as long as from {@code cuMemAllocHost} memory (1.51 against 1.50 ms), so
     * adapters' host blocks stay ordinary page-locked memory.
     */
    MemorySegment memHostAllocWriteCombined(long bytes) {
        return outAddress("cuMemHostAlloc(" + bytes + " bytes, write-combined)",
                p -> (int) cuMemHostAlloc.invokeExact(p, bytes, CU_MEMHOSTALLOC_WRITECOMBINED)).reinterpret(bytes);
    }

    void memFreeHost(MemorySegment host) {
        call("cuMemFreeHost", () -> (int) cuMemFreeHost.invokeExact(host));
    }

    void copyHtoDAsync(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        call("cuMemcpyHtoDAsync(" + bytes + " bytes)", () -> (int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream));
    }

    void copyDtoHAsync(MemorySegment dst, long src, long bytes, MemorySegment stream) {
        call("cuMemcpyDtoHAsync(" + bytes + " bytes)", () -> (int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream));
    }

    void copyDtoDAsync(long dst, long src, long bytes, MemorySegment stream) {
        call("cuMemcpyDtoDAsync(" + bytes + " bytes)", () -> (int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream));
    }

    void memsetD32Async(long dst, int value, long count, MemorySegment stream) {
        call("cuMemsetD32Async", () -> (int) cuMemsetD32Async.invokeExact(dst, value, count, stream));
    }

    // ---- streams and events -----------------------------------------------------------------------

    MemorySegment streamCreate(int flags) {
        return outAddress("cuStreamCreate", p -> (int) cuStreamCreate.invokeExact(p, flags));
    }

    void streamDestroy(MemorySegment stream) {
        call("cuStreamDestroy", () -> (int) cuStreamDestroy.invokeExact(stream));
    }

    void streamSynchronize(MemorySegment stream) {
        call("cuStreamSynchronize", () -> (int) cuStreamSynchronize.invokeExact(stream));
    }

    MemorySegment eventCreate() {
        return eventCreate(0);
    }

    /** An event with {@code flags} ({@link #CU_EVENT_DISABLE_TIMING} for one only waited on or queried). */
    MemorySegment eventCreate(int flags) {
        return outAddress("cuEventCreate", p -> (int) cuEventCreate.invokeExact(p, flags));
    }

    void eventRecord(MemorySegment event, MemorySegment stream) {
        call("cuEventRecord", () -> (int) cuEventRecord.invokeExact(event, stream));
    }

    void eventSynchronize(MemorySegment event) {
        call("cuEventSynchronize", () -> (int) cuEventSynchronize.invokeExact(event));
    }

    /** cuEventQuery's answer while the event's work is still running. */
    private static final int CUDA_ERROR_NOT_READY = 600;

    /** True when all work the event captured has completed, false while it has not (never blocks). */
    boolean eventQuery(MemorySegment event) {
        int rc;
        try {
            rc = (int) cuEventQuery.invokeExact(event);
        } catch (Throwable t) {
            throw wrap("cuEventQuery", t);
        }
        if (rc == CUDA_ERROR_NOT_READY) {
            return false;
        }
        check(rc, "cuEventQuery");
        return true;
    }

    /** Work enqueued on {@code stream} after this call starts only once {@code event} has completed. */
    void streamWaitEvent(MemorySegment stream, MemorySegment event) {
        call("cuStreamWaitEvent", () -> (int) cuStreamWaitEvent.invokeExact(stream, event, 0));
    }

    float eventElapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena arena = Arena.ofConfined()) {
            return out(arena, JAVA_FLOAT, "cuEventElapsedTime", ms -> (int) cuEventElapsedTime.invokeExact(ms, start, end))
                    .get(JAVA_FLOAT, 0);
        }
    }

    void eventDestroy(MemorySegment event) {
        call("cuEventDestroy", () -> (int) cuEventDestroy.invokeExact(event));
    }

    // ---- modules and launches ---------------------------------------------------------------------

    /** Loads a cubin, fatbin or PTX image; returns null (and the error text through errorOut) when it fails. */
    MemorySegment moduleLoadData(MemorySegment image, String[] errorOut) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            int rc = (int) cuModuleLoadData.invokeExact(p, image);
            if (rc != 0) {
                errorOut[0] = "cuModuleLoadData failed: " + errorText(rc);
                return null;
            }
            return p.get(ADDRESS, 0);
        } catch (Throwable t) {
            throw wrap("cuModuleLoadData", t);
        }
    }

    void moduleUnload(MemorySegment module) {
        call("cuModuleUnload", () -> (int) cuModuleUnload.invokeExact(module));
    }

    /** The kernel, or null when the module has none of that name. */
    MemorySegment moduleGetFunction(MemorySegment module, String name) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            int rc = (int) cuModuleGetFunction.invokeExact(p, module, arena.allocateFrom(name));
            return rc == 0 ? p.get(ADDRESS, 0) : null;
        } catch (Throwable t) {
            throw wrap("cuModuleGetFunction", t);
        }
    }

    /** The function attribute that lets a kernel use more than 48 KB of dynamic shared memory. */
    static final int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    void funcSetAttribute(MemorySegment function, int attribute, int value) {
        call("cuFuncSetAttribute", () -> (int) cuFuncSetAttribute.invokeExact(function, attribute, value));
    }

    /** The hot path (hundreds of launches a step): no lambda, and the error names the launch's shape. */
    void launchKernel(MemorySegment function, int gx, int gy, int gz, int bx, int by, int bz, int sharedBytes,
                      MemorySegment stream, MemorySegment params, String name) {
        int rc;
        try {
            rc = (int) cuLaunchKernel.invokeExact(function, gx, gy, gz, bx, by, bz, sharedBytes, stream, params,
                    MemorySegment.NULL);
        } catch (Throwable t) {
            throw wrap("cuLaunchKernel(" + name + ")", t);
        }
        if (rc != 0) {
            throw new CudaException("cuLaunchKernel(" + name + ", grid " + gx + "x" + gy + "x" + gz + ", block " + bx
                    + "x" + by + "x" + bz + ", smem " + sharedBytes + ") failed: " + errorText(rc));
        }
    }

    /** {@code CUlaunchConfig} (cuda.h): 7 uints, the stream at 32, the attribute array at 40, their count at 48. */
    private static final long LAUNCH_CONFIG_BYTES = 56;
    /** {@code CUlaunchAttribute}: the id, padding to 8, a 64-byte value union. */
    private static final long LAUNCH_ATTRIBUTE_BYTES = 72;
    private static final int CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

    /**
     * A launch configuration of {@link #launchKernelProgrammatic}, allocated once by its caller: the config
     * followed by its one attribute, programmatic stream serialization allowed.
     */
    static MemorySegment programmaticLaunchConfig(Arena arena) {
        MemorySegment c = arena.allocate(LAUNCH_CONFIG_BYTES + LAUNCH_ATTRIBUTE_BYTES, 16);
        MemorySegment attribute = c.asSlice(LAUNCH_CONFIG_BYTES, LAUNCH_ATTRIBUTE_BYTES);
        attribute.set(JAVA_INT, 0, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
        attribute.set(JAVA_INT, 8, 1);
        c.set(ADDRESS, 40, attribute);
        c.set(JAVA_INT, 48, 1);
        return c;
    }

    /**
     * {@link #launchKernel} through {@code cuLaunchKernelEx} with programmatic stream serialization allowed
     * (sm_90+): the kernel may start while the kernel before it on the stream finishes, and must execute
     * {@code griddepcontrol.wait} (common.cuh, {@code pdl_entry}) before it reads or writes anything that one
     * may touch. {@code config} comes from {@link #programmaticLaunchConfig}; it is filled here.
     */
    void launchKernelProgrammatic(MemorySegment config, MemorySegment function, int gx, int gy, int gz, int bx,
                                  int sharedBytes, MemorySegment stream, MemorySegment params, String name) {
        config.set(JAVA_INT, 0, gx);
        config.set(JAVA_INT, 4, gy);
        config.set(JAVA_INT, 8, gz);
        config.set(JAVA_INT, 12, bx);
        config.set(JAVA_INT, 16, 1);
        config.set(JAVA_INT, 20, 1);
        config.set(JAVA_INT, 24, sharedBytes);
        config.set(ADDRESS, 32, stream);
        int rc;
        try {
            rc = (int) cuLaunchKernelEx.invokeExact(config, function, params, MemorySegment.NULL);
        } catch (Throwable t) {
            throw wrap("cuLaunchKernelEx(" + name + ")", t);
        }
        if (rc != 0) {
            throw new CudaException("cuLaunchKernelEx(" + name + ", grid " + gx + "x" + gy + "x" + gz + ", block " + bx
                    + ", smem " + sharedBytes + ", programmatic) failed: " + errorText(rc));
        }
    }

    // ---- graphs -----------------------------------------------------------------------------------

    /** While a stream of this thread captures, only this thread's unsafe calls are refused. */
    private static final int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;

    void streamBeginCapture(MemorySegment stream) {
        call("cuStreamBeginCapture",
                () -> (int) cuStreamBeginCapture.invokeExact(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    }

    MemorySegment streamEndCapture(MemorySegment stream) {
        return outAddress("cuStreamEndCapture", p -> (int) cuStreamEndCapture.invokeExact(stream, p));
    }

    MemorySegment graphInstantiate(MemorySegment graph) {
        return outAddress("cuGraphInstantiateWithFlags", p -> (int) cuGraphInstantiate.invokeExact(p, graph, 0L));
    }

    void graphLaunch(MemorySegment exec, MemorySegment stream) {
        call("cuGraphLaunch", () -> (int) cuGraphLaunch.invokeExact(exec, stream));
    }

    void graphDestroy(MemorySegment graph) {
        call("cuGraphDestroy", () -> (int) cuGraphDestroy.invokeExact(graph));
    }

    void graphExecDestroy(MemorySegment exec) {
        call("cuGraphExecDestroy", () -> (int) cuGraphExecDestroy.invokeExact(exec));
    }

    private static CudaException wrap(String call, Throwable t) {
        return new CudaException(call + ": native call failed: " + t, t);
    }
}
