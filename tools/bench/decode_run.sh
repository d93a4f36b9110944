#!/usr/bin/env bash
# One device call: Punica-J's decode step (DecodeStepBench), then HF transformers + PEFT on the same GPU,
# side by side. Runs ON the GPU machine from the checkout root, with the bundle carried:
#   here:   scripts/device-bundle && mkdir -p .device-bundle/tools && cp tools/bench/hf_decode.py \
#           tools/bench/decode_run.sh .device-bundle/tools/   (then copy .device-bundle to the checkout the tool sends)
#   device: bash .device-bundle/tools/decode_run.sh        (carry: [".device-bundle"])
# Extra arguments go to DecodeStepBench. Logs and CSVs land in $OUT.
set -o pipefail
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv | tee $OUT/gpu.txt
# 150 warm-up steps per configuration: the host code of a replayed step is JIT-compiled by then (a
# server runs millions of steps); the profile flag times each replayed graph on the device as well.
PUNICA_JAVA_OPTS="-Dpunica.cuda.profile=true" timeout 300 bash .device-bundle/device-run bench ai.punica.bench.DecodeStepBench \
  --out $OUT/punica_decode.csv --warmup 150 --steps 30 "$@" > $OUT/punica.log 2>&1
echo "java rc=$?"; grep -v "^WARNING" $OUT/punica.log | grep -v "^  \|kernel profile" | tail -n 45
PYTHONUNBUFFERED=1 timeout 230 python3 .device-bundle/tools/hf_decode.py --punica $OUT/punica_decode.csv --out $OUT/hf_decode.csv --budget-s 170 > $OUT/hf.log 2>&1
echo "python rc=$?"; grep -v -i "warn" $OUT/hf.log | tail -n 60
