#!/usr/bin/env bash
# Host emulation of attention_tc.cu against a float64 reference (no GPU needed): g++ with C++20 (std::barrier).
# run_emu.sh: the fixed problem classes; run_emu.sh N: the first N of them; run_emu.sh N SEED: N random problems.
# EMU_KERNEL=path runs another copy of the kernel source (e.g. a deliberately broken one, to see the check fail).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../main/cuda"
work="${TMPDIR:-/tmp}/punica-emu"
mkdir -p "$work"
python3 "$here/gen_host_kernel.py" "${EMU_KERNEL:-$src/attention_tc.cu}" "$work/attention_tc_host.cpp"
g++ -std=c++20 -O2 -pthread -I "$here" -I "$src" -I "$work" -include "$here/emu_prelude.h" "$here/emu_main.cpp" -o "$work/emu"
"$work/emu" "$@"
