#!/usr/bin/env bash
# One device call: migration between two engines on one GPU (ai.punica.bench.ClusterMigrationBench).
# Two CUDA engines on device 0, each with a KV pool of --kv-pages pages of 16 tokens (24 by default: a few
# requests fill one), 24 requests placed by consolidate: engines run out of pages and migrate their newest
# request to the other engine. Prints (1) per sampling mode the migrations, preemptions and mismatches against
# the same requests on one engine with room (every mismatch column must be 0), (2) the cost of one migration
# (continuation handed over -> next token, ms) against the tokens re-prefilled, next to a decode step's time.
# Runs ON the GPU machine from the checkout root, with the bundle carried:
#   here:   scripts/device-bundle
#   device: bash tools/bench/cluster_gpu.sh          (carry: [".device-bundle"])
# Extra arguments go to the bench (e.g. --kv-pages 16 --requests 32 --cost-tokens 16,64,256,512,960).
# Log: $OUT/cluster_migration.log.
set -o pipefail
OUT="${OUT:-$(pwd)/device-out}"
mkdir -p "$OUT"
export OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
timeout 300 bash .device-bundle/device-run bench ai.punica.bench.ClusterMigrationBench --backend cuda "$@" \
  > "$OUT/cluster_migration.log" 2>&1
echo "java rc=$? at ${SECONDS}s"
grep -v -e "^WARNING" -e " INFO " "$OUT/cluster_migration.log" | tail -n 30
