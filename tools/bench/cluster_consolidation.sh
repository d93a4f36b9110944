#!/usr/bin/env bash
# Punica's consolidation experiment (docs/cluster.md, "Consolidation experiment"): a request rate that rises and
# falls, sent by `punica bench serve --schedule` to `punica serve --engines N`, once per placement; while it runs,
# /v1/engine/state is read every 0.25 s (requests on each engine). Reports engines busy over time, engine-seconds
# busy (what releasing idle engines saves) and throughput per placement, as $OUT/cluster-consolidation/
# {consolidation.svg, summary.md, history.csv} plus each run's bench report.
#
#   here (CPU, the demo model):  bash tools/bench/cluster_consolidation.sh
#   GPU machine (2 engines on one GPU, carry [".device-bundle"]; here: scripts/device-bundle), two device calls
#   (a device call may run 10 minutes; each variant takes about 2):
#       CLUSTER_BACKEND=cuda VARIANTS="consolidate consolidate-active" bash tools/bench/cluster_consolidation.sh
#       CLUSTER_BACKEND=cuda VARIANTS="least-loaded round-robin" bash tools/bench/cluster_consolidation.sh
#   then, here, with both calls' $OUT/cluster-consolidation/<variant>/ copied into one DIR:
#       python3 tools/bench/cluster_consolidation.py report DIR "H200" "<the command line>"
#
# Knobs (environment): VARIANTS ("consolidate consolidate-active least-loaded round-robin"; consolidate-active is
# consolidate with --consolidate-below $ACTIVE_BELOW), ENGINES (3 on the CPU, 2 on CUDA), MAX_RUNNING per engine
# (4 CPU, 16 CUDA), SCHEDULE (rate steps/ramps, default 20s@0.5..8,20s@8..0.5 CPU; 30s@1..60,30s@60..1 CUDA),
# INPUT_LEN/OUTPUT_LEN (32/48 CPU, 128/128 CUDA), BENCH_ARGS (extra bench flags, e.g. --warmup 4), KV_MIB (CUDA: KV pool per engine, 2048), SERVE_ARGS (extra serve flags), MODEL (a model dir; default the
# bundled demo model), PORT (8123), MACHINE (label in the report).
set -uo pipefail
backend="${CLUSTER_BACKEND:-cpu}"
OUT="${OUT:-$(pwd)/bench-out}"
out="$OUT/cluster-consolidation"
mkdir -p "$out"
port="${PORT:-8123}"
variants="${VARIANTS:-consolidate consolidate-active least-loaded round-robin}"
if [ "$backend" = cuda ]; then
  engines="${ENGINES:-2}"; max_running="${MAX_RUNNING:-16}"; schedule="${SCHEDULE:-30s@1..60,30s@60..1}"
  input="${INPUT_LEN:-128}"; output="${OUTPUT_LEN:-128}"
  # Two engines share the GPU: each gets a KV pool of its own size (sizing by --gpu-memory-utilization reads the
  # device's used memory, which the first engine's pool already counts in).
  engine_args=(--backend cuda --engines "$engines" --kv-cache-mib "${KV_MIB:-2048}")
  machine="${MACHINE:-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)}"
  bash .device-bundle/device-run info > /dev/null 2>&1 # unpacks the bundle's JRE into /tmp/punica-jre
  JAVA="${JAVA:-/tmp/punica-jre/bin/java}"
  cp_all="${BUNDLE_CP:-$(ls .device-bundle/lib/*.jar | tr '\n' ':')}"
else
  engines="${ENGINES:-3}"; max_running="${MAX_RUNNING:-4}"; schedule="${SCHEDULE:-20s@0.5..8,20s@8..0.5}"
  input="${INPUT_LEN:-32}"; output="${OUTPUT_LEN:-48}"
  engine_args=(--backend cpu --engines "$engines")
  machine="${MACHINE:-$(nproc)-core $(uname -m) (CPU)}"
  source scripts/java-home.sh
  JAVA="${JAVA:-$JAVA_HOME/bin/java}"
  if [ -z "${BUNDLE_CP:-}" ]; then
    jar=$(ls cli/target/punica-cli-*.jar 2>/dev/null | grep -v -e sources -e tests | head -n1)
    if [ -z "$jar" ]; then
      echo "no cli/target/punica-cli-*.jar: run ./mvnw -B -ntp -q -o -DskipTests package -pl cli -am first" >&2
      exit 1
    fi
    cp_all="$jar:$(ls cli/target/lib/*.jar | tr '\n' ':')"
  else
    cp_all="$BUNDLE_CP"
  fi
fi
model_args=()
[ -n "${MODEL:-}" ] && model_args=(--model "$MODEL")
java_cli=("$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC
          -Dpunica.home="$(pwd)" -cp "$cp_all" ai.punica.cli.Main)
command="punica serve ${engine_args[*]} --max-running $max_running --placement P; punica bench serve --schedule $schedule --input-len $input --output-len $output --workloads uniform --seed 1 ${BENCH_ARGS:-}"
serve_pid=""
poll_pid=""
stop_all() {
  [ -n "$poll_pid" ] && kill "$poll_pid" 2>/dev/null
  [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  poll_pid=""; serve_pid=""
}
trap stop_all EXIT
trap 'stop_all; exit 143' TERM INT

for variant in $variants; do
  dir="$out/$variant"
  rm -rf "$dir" && mkdir -p "$dir/bench"
  placement="$variant"; extra=()
  if [ "$variant" = consolidate-active ]; then
    placement=consolidate; extra=(--consolidate-below "${ACTIVE_BELOW:-2}" --consolidate-interval-ms 200)
  fi
  "${java_cli[@]:0:1}" -Xmx2g "${java_cli[@]:1}" serve --port "$port" "${engine_args[@]}" "${model_args[@]}" \
    --max-running "$max_running" --placement "$placement" "${extra[@]}" ${SERVE_ARGS:-} > "$dir/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 240); do
    curl -s -o /dev/null "localhost:$port/health" && break
    sleep 1
  done
  python3 tools/bench/cluster_consolidation.py poll "http://127.0.0.1:$port" "$dir/engines.csv" &
  poll_pid=$!
  "${java_cli[@]:0:1}" -Xmx1g "${java_cli[@]:1}" bench serve --base-url "http://127.0.0.1:$port/v1" \
    --schedule "$schedule" --input-len "$input" --output-len "$output" --workloads uniform --seed 1 \
    --out "$dir/bench" --no-progress --metrics-interval 0.25 ${BENCH_ARGS:-} > "$dir/bench.log" 2>&1
  echo "== $variant: bench rc=$? at ${SECONDS}s"
  sleep 1
  stop_all
done
python3 tools/bench/cluster_consolidation.py report "$out" "$machine" "$command"
