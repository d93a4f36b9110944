#!/usr/bin/env python3
"""Were KV pages ever the limit in a serving run? (issue 13: is a unified adapter + KV pool worth building?)

Reads what tools/bench/serve_gpu.sh leaves in its serve-bench/ folder:
  serve.log                  the engine's start line: "... N KV pages of P tokens (M MiB) ..., S adapter slots"
  engine-state.json          GET /v1/engine/state once the server is up: kv_pages_total, page_size, max_running
  PART/*.json                each `punica bench serve` run: server_metrics.samples every 0.25 s, from /metrics:
                             vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc
  PART/metrics-before.txt,   /metrics before and after the part: vllm:num_preemptions_total
  PART/metrics-after.txt
and prints, per run: the peak KV usage and pages in use, the pages one sequence of the run needs, whether the
queue waited while fewer than max_running requests ran, and the preemptions of the part. KV pages were "the
limit" when, at some sample, requests waited, fewer than max_running ran and the free pages (less the 1 %
watermark) could not hold one more sequence; or when the engine preempted.

usage: python3 kv_limit.py SERVE_BENCH_DIR [--input 128] [--output 128]
"""
import glob
import json
import math
import os
import re
import sys


def number(path, name):
    """Sum of a metric's samples in a Prometheus text file, or None."""
    try:
        text = open(path).read()
    except OSError:
        return None
    total = None
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    root = argv[0]
    opts = dict(zip(argv[1::2], argv[2::2]))
    prompt = int(opts.get("--input", 128))
    output = int(opts.get("--output", 128))

    pages_total = page_size = max_running = slots = kv_mib = None
    try:
        state = json.load(open(os.path.join(root, "engine-state.json")))
        engines = state.get("engines", [])
        pages_total = sum(e.get("kv_pages_total", 0) for e in engines) or None
        page_size = engines[0].get("page_size") if engines else None
        max_running = sum(e.get("max_running", 0) for e in engines) or None
    except (OSError, ValueError):
        pass
    try:
        log = open(os.path.join(root, "serve.log")).read()
        m = re.search(r"(\d+) KV pages of (\d+) tokens \((\d+) MiB\).*?(\d+) adapter slots", log)
        if m:
            pages_total = pages_total or int(m.group(1))
            page_size = page_size or int(m.group(2))
            kv_mib = int(m.group(3))
            slots = int(m.group(4))
    except OSError:
        pass
    if not pages_total or not page_size:
        print(f"{root}: no KV page count (neither engine-state.json nor the engine's start line in serve.log)")
        return 1
    max_running = max_running or 128
    per_seq = math.ceil((prompt + output) / page_size)
    watermark = pages_total // 100
    print(f"KV pool: {pages_total} pages of {page_size} tokens"
          + (f" ({kv_mib} MiB)" if kv_mib else "") + (f", {slots} adapter slots" if slots else "")
          + f"; max running {max_running}; one sequence of {prompt}+{output} tokens needs {per_seq} pages, "
          + f"{max_running} of them {max_running * per_seq} pages ({100.0 * max_running * per_seq / pages_total:.1f} %"
          + " of the pool)")
    print()
    print("| part | run | samples | peak KV usage | peak pages used | peak running | samples waiting while running < max"
          " | of those, KV full | preemptions (part) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    limited = False
    for part_dir in sorted(glob.glob(os.path.join(root, "*"))):
        if not os.path.isdir(part_dir):
            continue
        part = os.path.basename(part_dir)
        before = number(os.path.join(part_dir, "metrics-before.txt"), "vllm:num_preemptions_total")
        after = number(os.path.join(part_dir, "metrics-after.txt"), "vllm:num_preemptions_total")
        preempted = None if before is None or after is None else int(after - before)
        if preempted:
            limited = True
        for run_file in sorted(glob.glob(os.path.join(part_dir, "*.json"))):
            try:
                run = json.load(open(run_file))
            except ValueError:
                continue
            samples = (run.get("server_metrics") or {}).get("samples") or []
            if not samples:
                continue
            usage = [s.get("kv_cache_usage") for s in samples if s.get("kv_cache_usage") is not None]
            peak = max(usage) if usage else float("nan")
            held_back = [s for s in samples if (s.get("waiting") or 0) > 0 and (s.get("running") or 0) < max_running]
            kv_full = [s for s in held_back
                       if pages_total - (s.get("kv_cache_usage") or 0) * pages_total - watermark < per_seq]
            limited = limited or bool(kv_full)
            print(f"| {part} | {run.get('label', os.path.basename(run_file))} | {len(samples)} | {100 * peak:.1f} % | "
                  f"{round(peak * pages_total)} | {max((s.get('running') or 0) for s in samples):.0f} | "
                  f"{len(held_back)} | {len(kv_full)} | {'' if preempted is None else preempted} |")
    print()
    print("KV pages WERE the limit at some point (see the rows above)." if limited else
          "KV pages were never the limit: no preemption, and no sample where requests waited for pages.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
