#!/usr/bin/env python3
"""Punica's consolidation experiment (docs/cluster.md): helpers for tools/bench/cluster_consolidation.sh.

  poll URL CSV             read URL/v1/engine/state every 0.25 s until killed; one CSV row per read:
                           seconds, then requests on each engine (the scheduler's exact count)
  report DIR MACHINE CMD   for each DIR/<variant>/ (engines.csv, bench/*.json): engines busy over time, engine-seconds
                           busy, throughput; writes DIR/consolidation.svg (self-contained, no network),
                           DIR/summary.md and DIR/history.csv (rows for docs/benchmarks/history.csv)

Only the standard library: it runs on the GPU machine as it is.
"""
import csv
import glob
import json
import os
import sys
import time
import urllib.request


def poll(url, path):
    start = time.monotonic()
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        while True:
            try:
                with urllib.request.urlopen(url.rstrip("/") + "/v1/engine/state", timeout=2) as r:
                    state = json.load(r)
                row = [round(time.monotonic() - start, 3)]
                row += [e.get("requests", e["running"] + e["waiting"]) for e in state["engines"]]
                out.writerow(row)
                f.flush()
            except OSError:
                pass  # not up yet, or stopping
            time.sleep(0.25)


def load_variant(d):
    series = []
    with open(os.path.join(d, "engines.csv")) as f:
        for row in csv.reader(f):
            series.append((float(row[0]), [int(x) for x in row[1:]]))
    runs = sorted(glob.glob(os.path.join(d, "bench", "*.json")))
    summary = {}
    if runs:
        with open(runs[0]) as f:
            summary = json.load(f).get("summary", {})
    return series, summary


def active(series):
    """The part of the series from the first to the last read with a request anywhere (the run itself)."""
    busy = [i for i, (_, counts) in enumerate(series) if sum(counts) > 0]
    if not busy:
        return []
    return series[busy[0]:busy[-1] + 1]


def engine_seconds(series):
    """Integral over time of the number of engines holding a request (what releasing idle engines saves)."""
    total = 0.0
    for (t0, c0), (t1, _) in zip(series, series[1:]):
        total += (t1 - t0) * sum(1 for c in c0 if c > 0)
    return total


def svg(variants, path):
    width, lane, left, top = 900, 150, 70, 30
    height = top + lane * len(variants) + 40
    tmax = max((s[-1][0] - s[0][0]) for _, s, _ in variants if s) or 1.0
    nmax = max(len(s[0][1]) for _, s, _ in variants if s)
    rmax = max((max(sum(c) for _, c in s) for _, s, _ in variants if s), default=1) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="18" font-size="14">Engines busy (filled, left axis) and requests in the '
             f'server (line, right axis) over time, per placement</text>']
    plot_w = width - left - 60
    for k, (name, s, _) in enumerate(variants):
        y0 = top + k * lane
        h = lane - 30
        parts.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{h}" fill="none" stroke="#999"/>')
        parts.append(f'<text x="{left + 5}" y="{y0 + 14}" font-weight="bold">{name}</text>')
        for n in range(nmax + 1):
            y = y0 + h - h * n / nmax
            parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{n}</text>')
        if not s:
            continue
        t0 = s[0][0]
        pts, line = [], []
        for t, counts in s:
            x = left + plot_w * (t - t0) / tmax
            busy = sum(1 for c in counts if c > 0)
            pts.append((x, y0 + h - h * busy / nmax))
            line.append(f"{x:.1f},{y0 + h - h * sum(counts) / rmax:.1f}")
        area = [f"{left:.1f},{y0 + h:.1f}"]
        for i, (x, y) in enumerate(pts):
            if i > 0:
                area.append(f"{x:.1f},{pts[i - 1][1]:.1f}")  # a step: hold the last value until this read
            area.append(f"{x:.1f},{y:.1f}")
        area.append(f"{pts[-1][0]:.1f},{y0 + h:.1f}")
        parts.append(f'<polygon points="{" ".join(area)}" fill="#7aa6d8" fill-opacity="0.7"/>')
        parts.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#c0392b" stroke-width="1.2"/>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{y0 + 10}">{rmax} req</text>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{y0 + h}">0</text>')
    yb = top + lane * len(variants) - 10
    for i in range(6):
        x = left + plot_w * i / 5
        parts.append(f'<text x="{x:.1f}" y="{yb}" text-anchor="middle">{tmax * i / 5:.0f} s</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def report(d, machine, command):
    variants = []
    for sub in sorted(os.listdir(d)):
        p = os.path.join(d, sub)
        if os.path.isfile(os.path.join(p, "engines.csv")):
            series, summary = load_variant(p)
            variants.append((sub, active(series), summary))
    order = {"consolidate": 0, "consolidate-active": 1, "least-loaded": 2, "round-robin": 3}
    variants.sort(key=lambda v: order.get(v[0], 9))
    svg(variants, os.path.join(d, "consolidation.svg"))
    date = time.strftime("%Y-%m-%d", time.gmtime())
    commit = os.popen("git rev-parse --short HEAD 2>/dev/null").read().strip() or "unknown"
    lines = ["| placement | engine-seconds busy | mean engines busy | peak requests | completed | failed | "
             "output tokens/s | TTFT p50 ms | TPOT p50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    page = os.environ.get("PAGE", "cluster.md")  # the docs/benchmarks page the rows point to
    for name, s, summ in variants:
        es = engine_seconds(s)
        span = (s[-1][0] - s[0][0]) if len(s) > 1 else 0
        peak = max((sum(c) for _, c in s), default=0)
        ttft = summ.get("ttft_ms", {}).get("p50", float("nan"))
        tpot = summ.get("tpot_ms", {}).get("p50", float("nan"))
        thr = summ.get("output_throughput", float("nan"))
        lines.append(f"| {name} | {es:.1f} | {es / span if span else 0:.2f} | {peak} | {summ.get('completed', '-')} | "
                     f"{summ.get('failed', '-')} | {thr:.1f} | {ttft:.0f} | {tpot:.1f} |")
        rows.append([date, commit, machine, "cluster consolidation", f"{name} rise-and-fall", "engine-seconds busy",
                     f"{es:.1f}", page])
        rows.append([date, commit, machine, "cluster consolidation", f"{name} rise-and-fall", "output tokens/s",
                     f"{thr:.1f}", page])
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(f"{date}, commit {commit}, {machine}\n\n`{command}`\n\n" + "\n".join(lines) + "\n")
    with open(os.path.join(d, "history.csv"), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "poll":
        poll(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
