#!/usr/bin/env bash
# One device call that runs every gpu-tagged test class in parallel JVMs (the reference computations they
# compare against are single-threaded CPU work; the machine has 16 cores).
# Runs ON the GPU machine from the checkout root with the bundle carried (carry: [".device-bundle"]):
#   bash .device-bundle/tools/gpu_check.sh [CLASS...]      (default: every gpu-tagged class below)
# Logs land in $OUT/tests_all.out and every CHECK line in $OUT/checks.txt; the summary (one line per class,
# its counts and failures) is printed.
# On a GPU machine a skipped or aborted GPU test is a failure (it means CUDA did not load, or a test
# assumed something the machine lacks), and so is a class that ran no test: the script then prints a
# "GPU CHECK FAILED" line per class and exits 1; it exits 0 only when every class ran tests and all passed.
# GPU_CHECK_JAVA_OPTS adds JVM flags to every class's run, e.g. -Dpunica.cuda.sgmvTcMinRows=0 (no tensor-core
# SGMV) or -Dpunica.cuda.tensorCoreAttention=false (prefill attention back on the CUDA-core kernel).
set -o pipefail
OUT="${OUT:-$(pwd)/device-out}"
mkdir -p "$OUT"
classes=("$@")
if [ ${#classes[@]} -eq 0 ]; then
  classes=(ai.punica.backend.cuda.CudaBackendTest ai.punica.backend.cuda.CudaFixtureTest
           ai.punica.backend.cuda.CudaStepGraphTest ai.punica.backend.cuda.CudaFusedOpsTest
           ai.punica.backend.cuda.CudaAttentionTest ai.punica.backend.cuda.CudaSgmvTest
           ai.punica.backend.cuda.CudaSgmvGroupTest ai.punica.backend.cuda.CudaSgmvTensorCoreTest
           ai.punica.backend.cuda.CudaAdapterUploadTest ai.punica.backend.cuda.CudaPinnedAdapterTest
           ai.punica.backend.cuda.CudaSamplingTest ai.punica.backend.cuda.CudaSamplingOptionsEngineTest
           ai.punica.backend.cuda.CudaFloat32LogitsTest ai.punica.backend.cuda.CudaPrefillAttentionTest
           ai.punica.backend.cuda.CudaBatchInvarianceTest ai.punica.backend.cuda.CudaLoraApartTest
           ai.punica.backend.cuda.CudaGemmTuningTest
           ai.punica.server.ServerOnGpuTest)
fi
limit="${GPU_CHECK_LIMIT_S:-540}"
# Unpack the JRE once: parallel first runs of device-run would unpack it over each other (SIGBUS).
bash .device-bundle/device-run info > /dev/null 2>&1
for c in "${classes[@]}"; do
  name=${c##*.}
  ( OUT="$OUT/$name" PUNICA_JAVA_OPTS="-Xmx6g ${GPU_CHECK_JAVA_OPTS:-}" timeout "$limit" bash .device-bundle/device-run tests --select-class "$c" \
      > "$OUT/t_$name.out" 2>&1; echo "$? $c" > "$OUT/rc_$name" ) &
done
wait
# The JUnit console launcher's summary line "[   12 tests successful   ]" as a number (0 when missing).
count() {
  local n
  n=$(sed -n "s/^\[ *\([0-9][0-9]*\) $2 *\]$/\1/p" "$1" | head -n1)
  echo "${n:-0}"
}
failed=0
for c in "${classes[@]}"; do
  name=${c##*.}
  f="$OUT/t_$name.out"
  rc=1
  [ -f "$OUT/rc_$name" ] && read -r rc _ < "$OUT/rc_$name"
  ok=$(count "$f" "tests successful"); bad=$(count "$f" "tests failed")
  skipped=$(( $(count "$f" "tests skipped") + $(count "$f" "tests aborted") ))
  containers=$(( $(count "$f" "containers skipped") + $(count "$f" "containers aborted") + $(count "$f" "containers failed") ))
  echo "$name rc=$rc successful=$ok failed=$bad skipped/aborted=$skipped containers not run/failed=$containers"
  grep -E "✘|↷|■" -A2 "$f" | head -8
  why=""
  [ "$rc" != 0 ] && why="$why exit status $rc;"
  [ "$ok" = 0 ] && why="$why no test ran;"
  [ "$bad" != 0 ] && why="$why $bad failed;"
  [ "$skipped" != 0 ] && why="$why $skipped skipped or aborted (on a GPU machine every GPU test must run);"
  [ "$containers" != 0 ] && why="$why $containers test containers skipped, aborted or failed;"
  if [ -n "$why" ]; then
    echo "GPU CHECK FAILED: $name:$why"
    failed=1
  fi
done
grep -h "CHECK" "$OUT"/t_*.out > "$OUT/checks.txt"
cat "$OUT"/t_*.out > "$OUT/tests_all.out"
rm -rf "$OUT"/Cuda* "$OUT"/ServerOnGpuTest "$OUT"/rc_* "$OUT"/t_*.out
if [ $failed = 0 ]; then
  echo "GPU CHECK PASSED: ${#classes[@]} classes, every gpu-tagged test ran and passed"
fi
exit $failed
