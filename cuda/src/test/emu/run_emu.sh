#!/usr/bin/env bash
# Host emulation of the attention kernels against a float64 reference (no GPU needed): g++ with C++20 (std::barrier).
#   run_emu.sh [N [SEED]]         attention_tc.cu: the fixed problem classes (the first N), or N random ones
#   run_emu.sh decode [N [SEED]]  attention.cu's decode kernels: merged in the kernel, again, and by attention_merge
#   run_emu.sh fused [N [SEED]]   sgmv.cu's fused decode LoRA kernel (thread-block clusters emulated)
# EMU_KERNEL=path runs another copy of the kernel source (e.g. a deliberately broken one, to see the check fail).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../main/cuda"
work="${TMPDIR:-/tmp}/punica-emu"
mkdir -p "$work"
if [ "${1:-}" = decode ]; then
  shift
  python3 "$here/gen_decode_host.py" "${EMU_KERNEL:-$src/attention.cu}" "$work/attention_decode_host.cpp"
  g++ -std=c++20 -O2 -pthread -I "$here" -I "$src" -I "$work" "$here/emu_decode.cpp" -o "$work/emu_decode"
  exec "$work/emu_decode" "$@"
fi
if [ "${1:-}" = fused ]; then
  shift
  python3 "$here/gen_fused_host.py" "${EMU_KERNEL:-$src/sgmv.cu}" "$work/fused_host.cpp"
  g++ -std=c++20 -O2 -pthread -I "$here" -I "$src" -I "$work" "$here/emu_fused.cpp" -o "$work/emu_fused"
  exec "$work/emu_fused" "$@"
fi
python3 "$here/gen_host_kernel.py" "${EMU_KERNEL:-$src/attention_tc.cu}" "$work/attention_tc_host.cpp"
g++ -std=c++20 -O2 -pthread -I "$here" -I "$src" -I "$work" -include "$here/emu_prelude.h" "$here/emu_main.cpp" -o "$work/emu"
"$work/emu" "$@"
