package ai.punica.backend.cuda;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
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
    static final int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    static final int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    static final int CU_STREAM_NON_BLOCKING = 1;
    static final int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
    static final int CU_EVENT_DISABLE_TIMING = 2;
    static final int CUDA_ERROR_NOT_READY = 600;

    private static final Linker LINKER = Linker.nativeLinker();

    private static volatile Driver instance;
    private static volatile Throwable loadFailure;

    private final SymbolLookup lib;
    private final MethodHandle cuInit, cuDeviceGetCount, cuDeviceGet, cuDeviceGetAttribute, cuDeviceGetName,
            cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxSetCurrent, cuMemGetInfo,
            cuMemAlloc, cuMemFree, cuMemAllocHost, cuMemFreeHost, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync,
            cuMemcpyDtoDAsync, cuMemsetD32Async, cuStreamCreate, cuStreamDestroy, cuStreamSynchronize,
            cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventElapsedTime, cuEventDestroy, cuEventQuery,
            cuStreamWaitEvent,
            cuModuleLoadData, cuModuleUnload, cuModuleGetFunction, cuLaunchKernel, cuFuncSetAttribute,
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

    private MethodHandle h(String name, java.lang.foreign.MemoryLayout... args) {
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

    // ---- devices and contexts ---------------------------------------------------------------------

    int deviceCount() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment n = arena.allocate(JAVA_INT);
            check((int) cuDeviceGetCount.invokeExact(n), "cuDeviceGetCount");
            return n.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuDeviceGetCount", t);
        }
    }

    int device(int ordinal) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment d = arena.allocate(JAVA_INT);
            check((int) cuDeviceGet.invokeExact(d, ordinal), "cuDeviceGet(" + ordinal + ")");
            return d.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuDeviceGet", t);
        }
    }

    int deviceAttribute(int device, int attribute) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(JAVA_INT);
            check((int) cuDeviceGetAttribute.invokeExact(v, attribute, device), "cuDeviceGetAttribute(" + attribute + ")");
            return v.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuDeviceGetAttribute", t);
        }
    }

    String deviceName(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(256);
            check((int) cuDeviceGetName.invokeExact(buf, 256, device), "cuDeviceGetName");
            return buf.getString(0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuDeviceGetName", t);
        }
    }

    MemorySegment primaryContextRetain(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ctx = arena.allocate(ADDRESS);
            check((int) cuDevicePrimaryCtxRetain.invokeExact(ctx, device), "cuDevicePrimaryCtxRetain");
            return ctx.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuDevicePrimaryCtxRetain", t);
        }
    }

    void primaryContextRelease(int device) {
        try {
            check((int) cuDevicePrimaryCtxRelease.invokeExact(device), "cuDevicePrimaryCtxRelease");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuDevicePrimaryCtxRelease", t);
        }
    }

    void setCurrent(MemorySegment ctx) {
        try {
            check((int) cuCtxSetCurrent.invokeExact(ctx), "cuCtxSetCurrent");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuCtxSetCurrent", t);
        }
    }

    /** {free, total} bytes of device memory. */
    long[] memInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(JAVA_LONG);
            MemorySegment total = arena.allocate(JAVA_LONG);
            check((int) cuMemGetInfo.invokeExact(free, total), "cuMemGetInfo");
            return new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemGetInfo", t);
        }
    }

    // ---- memory -----------------------------------------------------------------------------------

    long memAlloc(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(JAVA_LONG);
            int rc = (int) cuMemAlloc.invokeExact(p, Math.max(bytes, 1L));
            if (rc != 0) {
                long[] info = memInfo();
                throw new CudaException("cuMemAlloc(" + bytes + " bytes) failed: " + errorText(rc) + "; device has "
                        + (info[0] >> 20) + " MiB free of " + (info[1] >> 20) + " MiB");
            }
            return p.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemAlloc", t);
        }
    }

    void memFree(long ptr) {
        try {
            check((int) cuMemFree.invokeExact(ptr), "cuMemFree");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemFree", t);
        }
    }

    /** Page-locked host memory the device can copy from and to asynchronously. */
    MemorySegment memAllocHost(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) cuMemAllocHost.invokeExact(p, bytes), "cuMemAllocHost(" + bytes + " bytes)");
            return p.get(ADDRESS, 0).reinterpret(bytes);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemAllocHost", t);
        }
    }

    void memFreeHost(MemorySegment host) {
        try {
            check((int) cuMemFreeHost.invokeExact(host), "cuMemFreeHost");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemFreeHost", t);
        }
    }

    void copyHtoDAsync(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyHtoDAsync(" + bytes + " bytes)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemcpyHtoDAsync", t);
        }
    }

    void copyDtoHAsync(MemorySegment dst, long src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoHAsync(" + bytes + " bytes)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemcpyDtoHAsync", t);
        }
    }

    void copyDtoDAsync(long dst, long src, long bytes, MemorySegment stream) {
        try {
            check((int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoDAsync(" + bytes + " bytes)");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemcpyDtoDAsync", t);
        }
    }

    void memsetD32Async(long dst, int value, long count, MemorySegment stream) {
        try {
            check((int) cuMemsetD32Async.invokeExact(dst, value, count, stream), "cuMemsetD32Async");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuMemsetD32Async", t);
        }
    }

    // ---- streams and events -----------------------------------------------------------------------

    MemorySegment streamCreate(int flags) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) cuStreamCreate.invokeExact(p, flags), "cuStreamCreate");
            return p.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuStreamCreate", t);
        }
    }

    void streamDestroy(MemorySegment stream) {
        try {
            check((int) cuStreamDestroy.invokeExact(stream), "cuStreamDestroy");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuStreamDestroy", t);
        }
    }

    void streamSynchronize(MemorySegment stream) {
        try {
            check((int) cuStreamSynchronize.invokeExact(stream), "cuStreamSynchronize");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuStreamSynchronize", t);
        }
    }

    MemorySegment eventCreate() {
        return eventCreate(0);
    }

    /** An event with {@code flags} ({@link #CU_EVENT_DISABLE_TIMING} for one only waited on or queried). */
    MemorySegment eventCreate(int flags) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) cuEventCreate.invokeExact(p, flags), "cuEventCreate");
            return p.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuEventCreate", t);
        }
    }

    void eventRecord(MemorySegment event, MemorySegment stream) {
        try {
            check((int) cuEventRecord.invokeExact(event, stream), "cuEventRecord");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuEventRecord", t);
        }
    }

    void eventSynchronize(MemorySegment event) {
        try {
            check((int) cuEventSynchronize.invokeExact(event), "cuEventSynchronize");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuEventSynchronize", t);
        }
    }

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
        try {
            check((int) cuStreamWaitEvent.invokeExact(stream, event, 0), "cuStreamWaitEvent");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuStreamWaitEvent", t);
        }
    }

    float eventElapsedMillis(MemorySegment start, MemorySegment end) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ms = arena.allocate(JAVA_FLOAT);
            check((int) cuEventElapsedTime.invokeExact(ms, start, end), "cuEventElapsedTime");
            return ms.get(JAVA_FLOAT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuEventElapsedTime", t);
        }
    }

    void eventDestroy(MemorySegment event) {
        try {
            check((int) cuEventDestroy.invokeExact(event), "cuEventDestroy");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuEventDestroy", t);
        }
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
        try {
            check((int) cuModuleUnload.invokeExact(module), "cuModuleUnload");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuModuleUnload", t);
        }
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

    void funcSetAttribute(MemorySegment function, int attribute, int value) {
        try {
            check((int) cuFuncSetAttribute.invokeExact(function, attribute, value), "cuFuncSetAttribute");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuFuncSetAttribute", t);
        }
    }

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

    // ---- graphs -----------------------------------------------------------------------------------

    void streamBeginCapture(MemorySegment stream) {
        try {
            check((int) cuStreamBeginCapture.invokeExact(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuStreamBeginCapture", t);
        }
    }

    MemorySegment streamEndCapture(MemorySegment stream) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) cuStreamEndCapture.invokeExact(stream, p), "cuStreamEndCapture");
            return p.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuStreamEndCapture", t);
        }
    }

    MemorySegment graphInstantiate(MemorySegment graph) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) cuGraphInstantiate.invokeExact(p, graph, 0L), "cuGraphInstantiateWithFlags");
            return p.get(ADDRESS, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuGraphInstantiateWithFlags", t);
        }
    }

    void graphLaunch(MemorySegment exec, MemorySegment stream) {
        try {
            check((int) cuGraphLaunch.invokeExact(exec, stream), "cuGraphLaunch");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuGraphLaunch", t);
        }
    }

    void graphDestroy(MemorySegment graph) {
        try {
            check((int) cuGraphDestroy.invokeExact(graph), "cuGraphDestroy");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuGraphDestroy", t);
        }
    }

    void graphExecDestroy(MemorySegment exec) {
        try {
            check((int) cuGraphExecDestroy.invokeExact(exec), "cuGraphExecDestroy");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable t) {
            throw wrap("cuGraphExecDestroy", t);
        }
    }

    private static CudaException wrap(String call, Throwable t) {
        return new CudaException(call + ": native call failed: " + t, t);
    }
}
