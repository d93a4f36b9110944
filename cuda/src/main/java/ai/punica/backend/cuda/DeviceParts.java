package ai.punica.backend.cuda;

/**
 * What every op family works with: the device (its stream, SM count and step-capture mode), device memory,
 * the staging ring (host data in, results out) and the typed kernel launches.
 */
record DeviceParts(CudaContext ctx, DeviceAllocator memory, StagingRing ring, Kernels kernels) {
}
