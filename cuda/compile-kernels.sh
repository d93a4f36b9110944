#!/usr/bin/env bash
# Compiles cuda/src/main/cuda/*.cu into fatbins (sm_80, sm_89, sm_90 machine code + compute_90 PTX)
# under $1/ai/punica/backend/cuda/kernels/, where the jar picks them up. Called by Maven (process-classes).
# Without nvcc it prints one line and exits 0: the backend then compiles the packaged .cu sources with
# NVRTC at run time. Skips files whose fatbin is newer than the sources.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: compile-kernels.sh OUTPUT_CLASSES_DIR}/ai/punica/backend/cuda/kernels"
src="$here/src/main/cuda"
nvcc_bin=""
for c in "${NVCC:-}" "$(command -v nvcc 2>/dev/null || true)" "${CUDA_HOME:-/nonexistent}/bin/nvcc" /usr/local/cuda/bin/nvcc; do
  if [ -n "$c" ] && [ -x "$c" ]; then nvcc_bin="$c"; break; fi
done
if [ -z "$nvcc_bin" ]; then
  echo "[punica-cuda] nvcc not found (set NVCC or CUDA_HOME): no fatbins; the CUDA backend will use NVRTC at run time"
  exit 0
fi
mkdir -p "$out"
arches=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_89,code=sm_89
        -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90)
pids=()
for cu in "$src"/*.cu; do
  name="$(basename "$cu" .cu)"
  fatbin="$out/$name.fatbin"
  if [ -f "$fatbin" ] && [ -z "$(find "$src" -newer "$fatbin" -name '*.cu*' | head -n1)" ]; then
    continue
  fi
  echo "[punica-cuda] nvcc $name.cu"
  "$nvcc_bin" -fatbin -O3 -std=c++17 "${arches[@]}" -I "$src" "$cu" -o "$fatbin.tmp" && mv "$fatbin.tmp" "$fatbin" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
