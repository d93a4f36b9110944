#!/usr/bin/env bash
# One device call for issue 13 (adapters at scale): ai.punica.bench.AdapterLoadBench on a Llama-2-7B-shaped model
# (random bf16 weights), rank-16 adapters on all seven projections (about 80 MB each):
#   - cold-load latency distribution: disk -> host memory with a warm page cache, and host -> device alone
#     (target: <= 2 ms for one adapter, Punica MLSys'24 section 5), twice: through page-locked host memory in the
#     device layout (one direct cuMemcpyHtoDAsync per adapter; what the engine does) and through ordinary memory
#     and the staging buffers (the path before session 5, for comparison);
#   - throughput with 32 vs 128 device slots, 1,000 registered adapter names, workloads skewed (Zipf 1.5) and
#     distinct (a different adapter per request), 256 requests submitted together, prompt 64, 32 new tokens.
# The disk holds 16 distinct adapter files (1.3 GB); the 1,000 names map onto them round robin, each name
# loaded on its own (the host cache and the slots key by name), so every cold load reads a file.
# Runs ON the GPU machine from the checkout root, with the bundle carried:
#   here:   scripts/device-bundle && mkdir -p .device-bundle/tools && cp tools/bench/adapters_gpu.sh .device-bundle/tools/
#   device: bash .device-bundle/tools/adapters_gpu.sh        (carry: [".device-bundle"])
# Extra arguments go to AdapterLoadBench (e.g. --slots 32,64,128 --requests 512). A dry run without a GPU:
#   ADAPTERS_BACKEND=cpu ADAPTERS_SHAPE=tiny bash tools/bench/adapters_gpu.sh --names 40 --slots 4,8 --requests 24
# Output in $OUT: gpu.txt, adapters_bench.log, adapters_bench.csv, host_copy.log. Time: about 4 minutes (limits 230 s
# and 60 s).
set -o pipefail
OUT="${OUT:-$(pwd)/device-out}"
mkdir -p "$OUT"
export OUT
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv \
  2>&1 | tee "$OUT/gpu.txt"
timeout "${ADAPTERS_LIMIT_S:-230}" bash .device-bundle/device-run bench ai.punica.bench.AdapterLoadBench \
  --backend "${ADAPTERS_BACKEND:-cuda}" --shape "${ADAPTERS_SHAPE:-llama7b}" --adapters /tmp/punica-adapters-13 \
  --write-adapters 16 --rank 16 --names 1000 --cold-loads 100 --slots 32,128 --workloads skewed,distinct \
  --requests 256 --prompt-len 64 --gen-len 32 --out "$OUT/adapters_bench.csv" "$@" > "$OUT/adapters_bench.log" 2>&1
echo "== adapters rc=$? (${SECONDS} s)"
# The number first: host -> device for the 80 MB adapter, p50 / p90 / max, by path.
awk -F, '$1 == "load" && $2 ~ /host_to_device/ {
  printf "== %-22s %d loads of %s MB: p50 %s ms  p90 %s ms  max %s ms (target p50 <= 2 ms)\n", $2, $4, $10, $5, $6, $8 }' \
  "$OUT/adapters_bench.csv" 2>/dev/null
grep -v -e "^WARNING" -e "INFO ai.punica" "$OUT/adapters_bench.log" | tail -n 30
# The link's own bound for the same bytes in the same call: one cuMemcpyHtoDAsync from page-locked memory, from
# pageable memory, and as two halves on two streams (what the 2 ms target is up against).
if [ "${ADAPTERS_BACKEND:-cuda}" = cuda ]; then
  timeout 60 bash .device-bundle/device-run bench ai.punica.backend.cuda.HostCopyBench > "$OUT/host_copy.log" 2>&1
  echo "== host copy rc=$?"
  grep -e "^device" -e "^BENCH" "$OUT/host_copy.log"
fi
