#!/usr/bin/env bash
# The serving benchmark on the GPU (issue 12): a random-weight Llama-2-7B-shaped checkpoint with 1,000 rank-16
# PEFT adapters on all seven projections (100 distinct weight files, the rest hard links: 80 MB each),
# `punica serve` on the CUDA backend with all of them registered, then `punica bench serve`:
#   sat100   saturation, 128 concurrent clients: base, identical, uniform:100, skewed:100, distinct over 100
#   sat1000  the same for 1,000 adapters: uniform:1000, skewed:1000, distinct over 1,000
#   rates  Poisson arrivals at 0.3, 0.6, 0.9 and 1.2 x the base model's saturated request rate (from sat100):
#          base, skewed:100, distinct over 100
#   ramp   skewed:100 under a rate ramp up and down (the queue and KV usage over time in its HTML)
# and a summary: every run's row, and the targets (output tok/s max/min across the four workloads <= 1.10,
# each >= 90 % of base-only) computed from the sat100 and sat1000 rows. Nothing is asserted: it is a benchmark.
# Runs ON the GPU machine from the checkout root with the bundle (scripts/device-bundle) carried; no network,
# no Maven. About 6-7 minutes on an H200.
#   here:   scripts/device-bundle && mkdir -p .device-bundle/tools && cp tools/bench/*.sh tools/bench/*.py .device-bundle/tools/
#   device: bash .device-bundle/tools/gpu_session.sh servebench           (carry: [".device-bundle"])
#      or:  bash tools/bench/serve_gpu.sh
# Output: $OUT/serve-bench.tgz of serve-bench/ (checkpoint.log, serve.log, engine-state.json, warmup/ sat100/ sat1000/
# rates/ ramp/ with each run's JSON and HTML, index.html, summary.md, summary.csv, bench.log, /metrics before and
# after the part; SUMMARY.md, which ends with kv_limit.py's table: were KV pages ever the limit?), and
# $OUT/serve-bench-SUMMARY.md. A warm-up round (distinct and base, 2 x clients requests each) runs first,
# unreported (SERVE_WARMUP=0 skips it).
# Knobs: SERVE_SHAPE (llama-2-7b), SERVE_ADAPTERS (1000), SERVE_DISTINCT (100), SERVE_RANK (16),
# SERVE_INPUT (128), SERVE_OUTPUT (128), SERVE_CLIENTS (128), SERVE_SLOTS (adapter slots; default: SERVE_CLIENTS),
# SERVE_SAT_REQUESTS (512), SERVE_RATE_SECONDS (8),
# SERVE_PARTS ("sat100 sat1000 rates ramp"), SERVE_BACKEND (cuda), SERVE_ARGS (extra `punica serve` options),
# SERVE_DEADLINE_S (500: no new part starts after it), SERVE_BASE_RATE (the base model's saturated request
# rate for rates/ramp when sat100 is not part of this call; read from sat100's summary.csv otherwise). A dry run without a GPU:
#   SERVE_SHAPE=tiny SERVE_BACKEND=cpu SERVE_ADAPTERS=20 SERVE_DISTINCT=4 SERVE_CLIENTS=8 SERVE_SAT_REQUESTS=32 \
#   SERVE_INPUT=16 SERVE_OUTPUT=8 SERVE_RATE_SECONDS=2 JAVA=java BUNDLE_CP="cli/target/punica-cli-0.1.0-SNAPSHOT.jar:cli/target/lib/*" \
#   bash tools/bench/serve_gpu.sh
set -o pipefail
OUT="${OUT:-$(pwd)/device-out}"
out="$OUT/serve-bench"
mkdir -p "$out"
shape="${SERVE_SHAPE:-llama-2-7b}"
count="${SERVE_ADAPTERS:-1000}"
distinct="${SERVE_DISTINCT:-100}"
rank="${SERVE_RANK:-16}"
input="${SERVE_INPUT:-128}"
output="${SERVE_OUTPUT:-128}"
clients="${SERVE_CLIENTS:-128}"
sat_requests="${SERVE_SAT_REQUESTS:-512}"
rate_seconds="${SERVE_RATE_SECONDS:-8}"
parts="${SERVE_PARTS:-sat100 sat1000 rates ramp}"
backend="${SERVE_BACKEND:-cuda}"
deadline="${SERVE_DEADLINE_S:-500}"
port="${SERVE_PORT:-8000}"
root="${SERVE_ROOT:-/tmp/punica-serve-bench}"
if [ -z "${JAVA:-}" ]; then
  bash .device-bundle/device-run info > /dev/null 2>&1 # unpacks the bundle's JRE into /tmp/punica-jre
  JAVA=/tmp/punica-jre/bin/java
fi
cp_all="${BUNDLE_CP:-$(ls .device-bundle/lib/*.jar | tr '\n' ':')}"
java_cli=("$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC
          -Dpunica.home="$(pwd)" -cp "$cp_all" ai.punica.cli.Main)

# 1. The checkpoint and adapters (reused when a previous call of this machine wrote them).
if [ -f "$root/done-$shape-$count-$distinct-$rank" ]; then
  echo "reused $root" > "$out/checkpoint.log"
else
  rm -rf "$root"
  "${java_cli[@]:0:1}" -Xmx12g "${java_cli[@]:1}" bench checkpoint --shape "$shape" --out "$root" --adapters "$count" \
    --distinct-adapter-weights "$distinct" --rank "$rank" --targets all > "$out/checkpoint.log" 2>&1 \
    && touch "$root/done-$shape-$count-$distinct-$rank"
fi
echo "== checkpoint rc=$? at ${SECONDS}s"; grep -v "^WARNING" "$out/checkpoint.log"; du -sh "$root/model" 2>/dev/null

# 2. The server, every adapter registered; slots for a full batch of distinct adapters (SERVE_SLOTS: more, so that
#    a waiting request's adapter can be copied in while every running one holds its slot).
names=$(cd "$root/adapters" && ls -d a* | sort)
adapter_dirs=$(for n in $names; do printf '%s ' "$root/adapters/$n"; done)
list100=$(echo "$names" | head -n "$distinct" | paste -sd, -)
list_all=$(echo "$names" | paste -sd, -)
if [ "$backend" = cuda ]; then
  serve_runner=(bash .device-bundle/device-run bench)
else
  serve_runner=("$JAVA" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp "$cp_all")
fi
PUNICA_JAVA_OPTS="-Dpunica.home=$(pwd) -Dorg.slf4j.simpleLogger.defaultLogLevel=info" \
  "${serve_runner[@]}" ai.punica.cli.Main serve --port $port --backend "$backend" --model "$root/model" \
  --served-model-name "$shape-random" --adapters $adapter_dirs --lora-slots "${SERVE_SLOTS:-$clients}" --max-lora-rank "$rank" \
  --max-running "$clients" ${SERVE_ARGS:-} > "$out/serve.log" 2>&1 &
stop_server() {
  local pid
  pid=$(pgrep -f "ai.punica.cli.Main serve --port $port" | head -n 1)
  [ -n "$pid" ] && kill -TERM "$pid"
}
# The server keeps 90 % of the GPU's memory while it runs: stop it however this script ends.
trap stop_server EXIT
trap 'stop_server; exit 143' TERM INT
for _ in $(seq 1 240); do
  curl -s -o /dev/null "localhost:$port/health" && break
  sleep 1
done
echo "== server up at ${SECONDS}s: $(grep -E "engine up|serving|KV" "$out/serve.log" | grep -v "^WARNING" | head -3 | cut -c1-300)"
# The KV pool's size for kv_limit.py (issue 13: were KV pages ever the limit?).
curl -s "localhost:$port/v1/engine/state" > "$out/engine-state.json"

bench() { # bench PART ARGS...: one `punica bench serve` call into $out/PART
  local part=$1; shift
  mkdir -p "$out/$part"
  curl -s "localhost:$port/metrics" > "$out/$part/metrics-before.txt" # preemptions of the part, for kv_limit.py
  "${java_cli[@]:0:1}" -Xmx4g "${java_cli[@]:1}" bench serve --base-url "http://127.0.0.1:$port/v1" \
    --tokenizer "$root/model" --input-len "$input" --output-len "$output" --out "$out/$part" --no-progress \
    --metrics-interval 0.25 "$@" > "$out/$part/bench.log" 2>&1
  local rc=$?
  curl -s "localhost:$port/metrics" > "$out/$part/metrics-after.txt"
  echo "== $part rc=$rc at ${SECONDS}s"
  cat "$out/$part/summary.md" 2>/dev/null || tail -n 20 "$out/$part/bench.log"
}
has() { [[ " $parts " == *" $1 "* ]] && [ "$SECONDS" -lt "$deadline" ]; }
sat=(--concurrency "$clients" --num-requests "$sat_requests" --warmup "$clients")

# JIT, CUDA graphs, adapter slots: one saturated round that no part reports.
[ "${SERVE_WARMUP:-1}" = 1 ] && bench warmup --concurrency "$clients" --num-requests $((2 * clients)) \
  --adapters "$list100" --workloads distinct,base > /dev/null
has sat100 && bench sat100 "${sat[@]}" --adapters "$list100" --workloads base,identical,uniform:"$distinct",skewed:"$distinct",distinct
has sat1000 && bench sat1000 "${sat[@]}" --adapters "$list_all" --workloads uniform:"$count",skewed:"$count",distinct

# The base model's saturated request rate sets the Poisson rates.
base_rate=${SERVE_BASE_RATE:-$(awk -F, '$2 == "base" {print $6}' "$out/sat100/summary.csv" 2>/dev/null)}
base_rate=${base_rate:-10}
if has rates; then
  rates=$(awk -v r="$base_rate" 'BEGIN {printf "%.2f,%.2f,%.2f,%.2f", 0.3*r, 0.6*r, 0.9*r, 1.2*r}')
  bench rates --rates "$rates" --duration "$rate_seconds" --warmup 16 --adapters "$list100" \
    --workloads base,skewed:"$distinct",distinct
fi
if has ramp; then
  lo=$(awk -v r="$base_rate" 'BEGIN {printf "%.2f", 0.2*r}')
  hi=$(awk -v r="$base_rate" 'BEGIN {printf "%.2f", 1.3*r}')
  bench ramp --schedule "6s@$lo..$hi,4s@$hi,6s@$hi..$lo" --warmup 16 --adapters "$list100" --workloads skewed:"$distinct"
fi

stop_server
wait

# 3. The summary: every run, then the targets from the saturation runs.
{
  echo "# punica bench serve on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)"
  echo "$shape, random bf16 weights; $count rank-$rank adapters on all seven projections; prompt $input, output $output tokens"
  for part in sat100 sat1000 rates ramp; do
    [ -f "$out/$part/summary.md" ] || continue
    echo; echo "## $part"; echo; cat "$out/$part/summary.md"
  done
  echo; echo "## Targets (output tok/s at saturation, $clients clients)"; echo
  for part in sat100 sat1000; do
    [ -f "$out/$part/summary.csv" ] || continue
    awk -F, -v part="$part" -v base_csv="$out/sat100/summary.csv" '
      BEGIN { while ((getline line < base_csv) > 0) { split(line, f, ","); if (f[2] == "base") base = f[7] } }
      NR > 1 && $2 != "base" { n++; v = $7 + 0; if (n == 1 || v > max) max = v; if (n == 1 || v < min) min = v;
                               rows = rows sprintf("- %s: %.1f tok/s (%.1f %% of base-only)\n", $2, v, base ? 100 * v / base : 0) }
      END { printf "%s: base-only %.1f tok/s\n%s", part, base, rows;
            if (n) printf "max/min across workloads: %.3f (target <= 1.10); lowest/base: %.1f %% (target >= 90 %%)\n\n",
                          max / min, base ? 100 * min / base : 0 }' "$out/$part/summary.csv"
  done
  # Issue 13, unified pool: were KV pages ever the limit? (samples of /metrics every 0.25 s; see docs/adapters.md)
  echo; echo "## KV pages at saturation ($clients clients, $input + $output tokens)"; echo
  python3 "$(dirname "$0")/kv_limit.py" "$out" --input "$input" --output "$output" 2>&1
} > "$out/SUMMARY.md"
cat "$out/SUMMARY.md"
cp "$out/SUMMARY.md" "$OUT/serve-bench-SUMMARY.md"
# The device tool brings back 8 files at most, 2 folders down: one archive, and no loose copies beside it.
(cd "$OUT" && tar czf serve-bench.tgz serve-bench && rm -rf serve-bench)
