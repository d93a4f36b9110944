#!/usr/bin/env bash
# One device call: end-to-end generation throughput of Punica-J (ai.punica.bench.GenerateThroughputBench)
# against HF transformers + PEFT (hf_generate.py) on the same GPU, Llama-2-7B shape with random bf16 weights,
# the same 64 rank-16 PEFT adapters on all seven projections (make_adapters.py), prompt 128, 128 new tokens,
# batches 8/16/32/64, workloads none/identical/uniform/skewed/distinct; the side-by-side table comes last.
# Runs ON the GPU machine from the checkout root, with the bundle carried:
#   here:   scripts/device-bundle && mkdir -p .device-bundle/tools && cp tools/bench/make_adapters.py \
#           tools/bench/hf_generate.py tools/bench/e2e_run.sh .device-bundle/tools/
#   device: bash .device-bundle/tools/e2e_run.sh        (carry: [".device-bundle"])
#           (or bash tools/bench/e2e_run.sh where the checkout has the tools)
# Extra arguments go to GenerateThroughputBench (e.g. --batches 8,32,64 --max-batch-tokens 2048); E2E_HF_ARGS
# go to hf_generate.py (e.g. "--batches 8,32,64 --workloads distinct,none").
# Logs and CSVs land in $OUT: gpu.txt, adapters.log, punica_generate.{log,csv}, hf_generate.{log,csv}.
# Time: about 30 s for the adapters (reused when /tmp/punica-adapters is complete), 1.5-3 min for
# Punica-J, the rest for HF, whose budget is what is left of E2E_DEADLINE_S (default 450 s) after Punica-J.
set -o pipefail
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$(pwd)/device-out}"
mkdir -p "$OUT"
export OUT
adapters="${E2E_ADAPTERS:-/tmp/punica-adapters}"
deadline="${E2E_DEADLINE_S:-450}"
# A dry run of this script without a GPU: E2E_SHAPE=tiny E2E_BACKEND=cpu E2E_DEVICE=cpu E2E_ADAPTERS=/tmp/x
shape="${E2E_SHAPE:-llama7b}"
backend="${E2E_BACKEND:-cuda}"
device="${E2E_DEVICE:-cuda}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv 2>&1 | tee "$OUT/gpu.txt"

PYTHONUNBUFFERED=1 timeout 120 python3 "$tools/make_adapters.py" --out "$adapters" --count 64 --shape "$shape" \
  > "$OUT/adapters.log" 2>&1
echo "make_adapters rc=$? at ${SECONDS}s"; grep -v -i "warn" "$OUT/adapters.log" | tail -n 5

timeout 200 bash .device-bundle/device-run bench ai.punica.bench.GenerateThroughputBench --backend "$backend" \
  --shape "$shape" --adapters "$adapters" --batches 8,16,32,64 --prompt-len 128 --gen-len 128 \
  --out "$OUT/punica_generate.csv" "$@" > "$OUT/punica_generate.log" 2>&1
echo "java rc=$? at ${SECONDS}s"; grep -v -e "^WARNING" -e "INFO ai.punica.lora.AdapterManager" "$OUT/punica_generate.log" | tail -n 40

# HF gets what is left: start no case that would end past the deadline, and kill it 30 s after that.
budget=$(( deadline - SECONDS - 30 ))
[ $budget -gt 240 ] && budget=240
if [ $budget -lt 60 ]; then
  echo "only ${budget}s left for HF; running it anyway with a 60 s budget"
  budget=60
fi
PYTHONUNBUFFERED=1 timeout $(( budget + 30 )) python3 "$tools/hf_generate.py" --adapters "$adapters" \
  --batches 8,16,32,64 --prompt-len 128 --gen-len 128 --hf-gen-len 16 --case-cap-s 25 --budget-s "$budget" \
  --shape "$shape" --device "$device" --out "$OUT/hf_generate.csv" ${E2E_HF_ARGS:-} > "$OUT/hf_generate.log" 2>&1
echo "python rc=$? at ${SECONDS}s"; grep -v -i "warn" "$OUT/hf_generate.log" | tail -n 40

python3 "$tools/hf_generate.py" --compare "$OUT/punica_generate.csv" "$OUT/hf_generate.csv" | tee "$OUT/side_by_side.txt"
echo "total ${SECONDS}s"
