#!/usr/bin/env bash
# One device call that does several of the GPU jobs of a session, in this order, each under its own time
# limit (the call itself may run 10 minutes): benchmarks first, on a quiet GPU, then the tests, whose
# classes run in parallel JVMs.
#   decode   DecodeStepBench (replayed decode steps, LoRA workloads, HBM bound); DECODE_ARGS overrides its
#            arguments; DECODE_JFR=1 records a Java Flight Recording of it ($OUT/decode.jfr) for the host side;
#            DECODE_SHOW_PROFILE=1 prints the per-kernel profile lines too (with DECODE_OPTS=-Dpunica.cuda.graphs=false)
#   decode-ab  the decode bench once per option set of DECODE_AB ('|'-separated, '' = defaults), in one call
#   decode-off  the same with LoRA as two launches on one stream (-Dpunica.cuda.fusedLora=false
#            -Dpunica.cuda.loraOverlap=false; DECODE_OFF_ARGS), for comparison
#   proj     ProjectionBench: each projection's GEMM alone, with LoRA on one stream, with the shrink overlapped
#   hfdecode hf_decode.py: HF transformers + PEFT decode steps next to the decode part's CSV (HF_DECODE_ARGS)
#   e2e      e2e_run.sh: end-to-end generation, Punica-J's engine then HF + PEFT (E2E_ARGS, E2E_HF_ARGS)
#   gemmprobe  gemm_probe.cu (built with the device's nvcc): the decode projections' GEMMs, cublasGemmEx's default
#            against each cublasLt heuristic algorithm, weights cold (is an algorithm search worth building?)
#   sampling SamplingBench: device time of the sampling kernel per decode batch
#   sgmv     SgmvBench (prefill LoRA, cold L2: CUDA-core vs tensor-core kernels against issue 14's targets, and
#            the crossover in rows per segment; then decode SGMV vs the base GEMM) and sgmv_torch.py (PyTorch baselines)
#   attention  PrefillAttentionBench: prefill / mixed-step attention, tensor-core kernel vs CUDA-core kernel
#            (TFLOP/s, % of cuBLAS and of the datasheet peak, 2k context batch 8; rows-per-sequence sweep)
#   serve    `punica serve` on the bundled demo model: the engine's start-up line (KV pages it sized from the
#            GPU's memory) and two completions over HTTP
#   servebench  serve_gpu.sh: `punica bench serve` against `punica serve` on a 7B random checkpoint with 1,000
#            adapters (docs/benchmarks/serving.md); about 6-7 minutes, so a device call of its own
#   invariant  what --batch-invariant costs on CUDA (issue 14 item 5): GenerateThroughputBench, 64 rank-16 adapters
#            (make_adapters.py), prompt 128, 128 new tokens, batches 8 and 32, workloads none and distinct, the
#            default backend then the batch-invariant one in the same call (INVARIANT_ARGS overrides the arguments)
#   tests    tools/bench/gpu_check.sh (every gpu-tagged test class), GPU_CHECK_LIMIT_S each (default 240); a
#            skipped GPU test or a class that ran none fails it, and then this script exits 1 (after the other parts)
# At the end everything under $OUT is packed into $OUT/session.tgz (the device tool brings back 8 files at most);
# a call that runs this script twice with its own OUT each must unpack (or copy) each archive before the next run.
# Runs ON the GPU machine from the checkout root with the bundle carried:
#   here:   scripts/device-bundle                  (it copies tools/bench/ into .device-bundle/tools/)
#   device: bash .device-bundle/tools/gpu_session.sh decode sgmv serve tests      (carry: [".device-bundle"])
set -o pipefail
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$(pwd)/device-out}"
mkdir -p "$OUT"
export OUT
run="bash .device-bundle/device-run"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit --format=csv 2>&1 | tee "$OUT/gpu.txt"
$run info > /dev/null 2>&1 # unpacks the JRE once

# The honest HBM bound in GB/s (issue 14): the best of a D2D copy and a read-only reduction, measured by PyTorch.
honest_bound() {
  timeout 120 python3 "$tools/hbm_bound.py" --gib 4 --out "$OUT/hbm_bound.csv" 2>/dev/null \
    | awk -F, '$1 == "honest_bound_median_tbs" {print $5 * 1000}'
}

status=0
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(decode sgmv serve tests)
for part in "${parts[@]}"; do
  start=$(date +%s)
  case "$part" in
    decode)
      args=(${DECODE_ARGS:---batches 1,8,32,64 --workloads none,identical,distinct --warmup 150 --steps 30})
      gbs=$(honest_bound)
      [ -n "$gbs" ] && args+=(--bandwidth-gbs "$gbs") && echo "honest HBM bound: $gbs GB/s"
      opts="-Dpunica.cuda.profile=true"
      [ "${DECODE_JFR:-0}" = 1 ] && opts="$opts -XX:StartFlightRecording=filename=$OUT/decode.jfr,settings=profile"
      PUNICA_JAVA_OPTS="$opts ${DECODE_OPTS:-}" timeout "${DECODE_LIMIT_S:-240}" $run bench ai.punica.bench.DecodeStepBench \
        --out "$OUT/punica_decode.csv" "${args[@]}" > "$OUT/decode.log" 2>&1
      echo "== decode rc=$? ($(( $(date +%s) - start )) s)"
      # DECODE_SHOW_PROFILE=1 keeps the per-kernel profile lines (eager runs: DECODE_OPTS=-Dpunica.cuda.graphs=false).
      if [ "${DECODE_SHOW_PROFILE:-0}" = 1 ]; then
        grep -v "^WARNING" "$OUT/decode.log" | tail -n 80
      else
        grep -v "^WARNING" "$OUT/decode.log" | grep -v "^  \|kernel profile" | tail -n 40
      fi
      ;;
    decode-ab)
      # The decode bench once per option set of DECODE_AB ('|'-separated; an empty set runs the defaults), one after
      # the other in this call, so that the difference is not between machines or calls. E.g.
      #   DECODE_AB='|-Dpunica.cuda.decodeMerge=true|-Dpunica.cuda.gemmTuning=true'
      args=(${DECODE_AB_ARGS:---batches 32,64 --workloads none,identical,distinct --warmup 150 --steps 30})
      gbs=$(honest_bound)
      [ -n "$gbs" ] && args+=(--bandwidth-gbs "$gbs") && echo "honest HBM bound: $gbs GB/s"
      IFS='|' read -r -a sets <<< "${DECODE_AB:-|}"
      i=0
      for set in "${sets[@]}"; do
        PUNICA_JAVA_OPTS="$set" timeout "${DECODE_LIMIT_S:-240}" $run bench ai.punica.bench.DecodeStepBench \
          --out "$OUT/decode_ab_$i.csv" "${args[@]}" > "$OUT/decode_ab_$i.log" 2>&1
        echo "== decode-ab $i [${set:-defaults}] rc=$? ($(( $(date +%s) - start )) s)"
        grep -E "^(none|identical|uniform|skewed|distinct) " "$OUT/decode_ab_$i.log"
        i=$((i + 1))
      done
      ;;
    decode-off)
      # The same bench with LoRA as two launches on the main stream (no fused kernel, no overlap), for comparison.
      args=(${DECODE_OFF_ARGS:---batches 32,64 --workloads none,distinct --warmup 150 --steps 30})
      PUNICA_JAVA_OPTS="-Dpunica.cuda.profile=true -Dpunica.cuda.fusedLora=false -Dpunica.cuda.loraOverlap=false ${DECODE_OPTS:-}" \
        timeout "${DECODE_LIMIT_S:-240}" $run bench ai.punica.bench.DecodeStepBench \
        --out "$OUT/punica_decode_off.csv" "${args[@]}" > "$OUT/decode_off.log" 2>&1
      echo "== decode-off rc=$? ($(( $(date +%s) - start )) s)"
      grep -v "^WARNING" "$OUT/decode_off.log" | grep -v "^  \|kernel profile" | tail -n 12
      ;;
    hfdecode)
      # HF transformers + PEFT, one decode step of the same shapes, next to the decode part's CSV.
      PYTHONUNBUFFERED=1 timeout "${HF_DECODE_LIMIT_S:-200}" python3 "$tools/hf_decode.py" --punica "$OUT/punica_decode.csv" \
        --out "$OUT/hf_decode.csv" ${HF_DECODE_ARGS:---batches 64,32,8,1 --workloads distinct,none --budget-s 120} \
        > "$OUT/hf_decode.log" 2>&1
      echo "== hfdecode rc=$? ($(( $(date +%s) - start )) s)"
      grep -v -i "warn" "$OUT/hf_decode.log" | tail -n 25
      ;;
    e2e)
      # End-to-end generation through the engine against HF + PEFT (e2e_run.sh; E2E_ARGS to the Java side).
      bash "$tools/e2e_run.sh" ${E2E_ARGS:-}
      echo "== e2e ($(( $(date +%s) - start )) s)"
      ;;
    proj)
      timeout "${PROJ_LIMIT_S:-150}" $run bench ai.punica.backend.cuda.ProjectionBench > "$OUT/proj.log" 2>&1
      echo "== proj rc=$? ($(( $(date +%s) - start )) s)"
      grep "BENCH" "$OUT/proj.log" | sed 's/^BENCH //'
      ;;
    gemmprobe)
      # gemm_probe.cu: cublasGemmEx's default (what the backend runs) against every cublasLt heuristic algorithm, for
      # the Llama-2-7B decode projections at 32/64/128 rows, weights cold. Built here with the device's toolkit.
      nvcc_bin="${NVCC:-/usr/local/cuda/bin/nvcc}"
      if [ ! -x "$nvcc_bin" ]; then
        echo "== gemmprobe: no nvcc at $nvcc_bin (set NVCC)"; status=1
      else
        "$nvcc_bin" -O2 -std=c++17 -o "$OUT/gemm_probe" "$tools/gemm_probe.cu" -lcublasLt -lcublas > "$OUT/gemmprobe.log" 2>&1 \
          && LD_LIBRARY_PATH="$(dirname "$(dirname "$nvcc_bin")")/lib64:${LD_LIBRARY_PATH:-}" \
             timeout "${GEMMPROBE_LIMIT_S:-180}" "$OUT/gemm_probe" "${GEMMPROBE_REPS:-40}" >> "$OUT/gemmprobe.log" 2>&1
        echo "== gemmprobe rc=$? ($(( $(date +%s) - start )) s)"
        rm -f "$OUT/gemm_probe"
        cat "$OUT/gemmprobe.log"
      fi
      ;;
    sampling)
      timeout "${SAMPLING_LIMIT_S:-120}" $run bench ai.punica.backend.cuda.SamplingBench > "$OUT/sampling.log" 2>&1
      echo "== sampling rc=$? ($(( $(date +%s) - start )) s)"
      grep "BENCH" "$OUT/sampling.log" | sed 's/^BENCH //'
      ;;
    sgmv)
      timeout "${SGMV_LIMIT_S:-180}" $run bench ai.punica.backend.cuda.SgmvBench > "$OUT/sgmv.log" 2>&1
      echo "== sgmv rc=$? ($(( $(date +%s) - start )) s)"
      grep "BENCH" "$OUT/sgmv.log" | sed 's/^BENCH //'
      grep -m 5 -E "Exception|Error|CUDA_ERROR" "$OUT/sgmv.log"
      PYTHONUNBUFFERED=1 timeout 90 python3 "$tools/sgmv_torch.py" > "$OUT/sgmv_torch.log" 2>&1
      echo "== sgmv_torch rc=$?"
      grep -v -i warn "$OUT/sgmv_torch.log" | tail -n 30
      ;;
    attention)
      timeout "${ATTENTION_LIMIT_S:-240}" $run bench ai.punica.backend.cuda.PrefillAttentionBench > "$OUT/attention.log" 2>&1
      echo "== attention rc=$? ($(( $(date +%s) - start )) s)"
      grep -E "BENCH|Exception|Error|at ai\.punica" "$OUT/attention.log" | sed 's/^BENCH //' | head -n 60
      ;;
    serve)
      # The server tests' simplelogger.properties (warn) is on the bundle's class path: ask for info again.
      PUNICA_JAVA_OPTS="-Dpunica.home=$(pwd) -Dorg.slf4j.simpleLogger.defaultLogLevel=info" \
        $run bench ai.punica.cli.Main serve --port 8000 > "$OUT/serve.log" 2>&1 &
      pid=$!
      for _ in $(seq 1 90); do
        curl -s -o /dev/null localhost:8000/health && break
        sleep 1
      done
      for model in upper sort; do
        curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' \
          -d "{\"model\":\"$model\",\"prompt\":\"input: red apple stone\\noutput:\",\"max_tokens\":16,\"temperature\":0}"
        echo
      done
      curl -s localhost:8000/metrics | grep -E "^vllm:(num_requests|gpu_cache_usage|kv_cache_usage)" | head -5
      # device-run's java is a child of the bash that $pid names: stop the server itself, or it keeps the
      # GPU memory it sized its KV cache from (90%) and every later part runs out of memory.
      pkill -TERM -f "ai.punica.cli.Main serve --port 8000"
      wait $pid
      echo "== serve ($(( $(date +%s) - start )) s)"
      grep -E "engine up|serving|ERROR|Exception" "$OUT/serve.log" | head -5
      ;;
    servebench)
      timeout "${SERVE_LIMIT_S:-560}" bash "$tools/serve_gpu.sh"
      echo "== servebench rc=$? ($(( $(date +%s) - start )) s)"
      ;;
    invariant)
      PYTHONUNBUFFERED=1 timeout 120 python3 "$tools/make_adapters.py" --out /tmp/punica-adapters --count 64 \
        --shape llama7b > "$OUT/invariant_adapters.log" 2>&1
      for inv in false true; do
        timeout "${INVARIANT_LIMIT_S:-150}" $run bench ai.punica.bench.GenerateThroughputBench --backend cuda \
          --shape llama7b --adapters /tmp/punica-adapters --prompt-len 128 --gen-len 128 \
          ${INVARIANT_ARGS:---batches 8,32 --workloads none,distinct} --batch-invariant $inv \
          --out "$OUT/invariant_$inv.csv" > "$OUT/invariant_$inv.log" 2>&1
        echo "== invariant=$inv rc=$? ($(( $(date +%s) - start )) s)"
        grep -v -e "^WARNING" -e "INFO ai.punica" "$OUT/invariant_$inv.log" | tail -n 8
      done
      ;;
    tests)
      GPU_CHECK_LIMIT_S="${GPU_CHECK_LIMIT_S:-240}" bash "$tools/gpu_check.sh" ${TEST_CLASSES:-}
      rc=$?
      [ $rc != 0 ] && status=1
      echo "== tests rc=$rc ($(( $(date +%s) - start )) s)"
      ;;
    *) echo "unknown part '$part' (decode | decode-ab | decode-off | gemmprobe | hfdecode | e2e | proj | sampling | sgmv | attention | serve | servebench | invariant | tests)"; status=2;;
  esac
done
# The device tool brings back at most 8 files: everything in one archive.
(cd "$OUT" && tar czf /tmp/session.tgz . && find . -mindepth 1 -delete && mv /tmp/session.tgz .)
exit $status
