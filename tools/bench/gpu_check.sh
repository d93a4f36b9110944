#!/usr/bin/env bash
# One device call that runs every gpu-tagged test class in parallel JVMs (the reference computations they
# compare against are single-threaded CPU work; the machine has 16 cores), then a short decode-step bench.
# Runs ON the GPU machine from the checkout root with the bundle carried (carry: [".device-bundle"]):
#   bash .device-bundle/tools/gpu_check.sh [CLASS...]      (default: every gpu-tagged class below)
# Logs land in $OUT/tests_all.out and every CHECK line in $OUT/checks.txt; the summary (one line per class, its CHECK lines' failures) is printed.
set -o pipefail
classes=("$@")
if [ ${#classes[@]} -eq 0 ]; then
  classes=(ai.punica.backend.cuda.CudaBackendTest ai.punica.backend.cuda.CudaFixtureTest
           ai.punica.backend.cuda.CudaStepGraphTest ai.punica.backend.cuda.CudaFusedOpsTest
           ai.punica.backend.cuda.CudaAttentionTest ai.punica.backend.cuda.CudaSgmvTest
           ai.punica.backend.cuda.CudaSgmvGroupTest ai.punica.backend.cuda.CudaAdapterUploadTest
           ai.punica.backend.cuda.CudaSamplingTest
           ai.punica.server.ServerOnGpuTest)
fi
limit="${GPU_CHECK_LIMIT_S:-540}"
# Unpack the JRE once: parallel first runs of device-run would unpack it over each other (SIGBUS).
bash .device-bundle/device-run info > /dev/null 2>&1
for c in "${classes[@]}"; do
  name=${c##*.}
  ( OUT="$OUT/$name" PUNICA_JAVA_OPTS="-Xmx6g" timeout "$limit" bash .device-bundle/device-run tests --select-class "$c" \
      > "$OUT/t_$name.out" 2>&1; echo "$? $c" > "$OUT/rc_$name" ) &
done
wait
for c in "${classes[@]}"; do
  name=${c##*.}
  read -r rc _ < "$OUT/rc_$name"
  counts=$(grep -E "tests (successful|failed)" "$OUT/t_$name.out" | head -2 | tr -s ' []' ' ' | paste -sd, -)
  echo "$name rc=$rc $counts"
  grep -E "✘" -A2 "$OUT/t_$name.out" | head -6
done
grep -h "CHECK" "$OUT"/t_*.out > "$OUT/checks.txt"
cat "$OUT"/t_*.out > "$OUT/tests_all.out"
rm -rf "$OUT"/Cuda* "$OUT"/ServerOnGpuTest "$OUT"/rc_* "$OUT"/t_*.out
