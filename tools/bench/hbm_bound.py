"""The honest HBM bound: the best of a device-to-device copy and a read-only kernel.

DecodeStepBench states "% of the HBM bound" against the bandwidth of our own `out = a + b` kernel, which is
below what the memory system delivers. This measures what a plain copy (cudaMemcpy D2D through
`Tensor.copy_`, bytes read + written) and a read-only reduction (`torch.sum` over bf16 in fp32, bytes read)
reach on the same GPU, with cold L2 (buffers far larger than the 60 MB L2), and prints the best.

Usage (GPU machine): python3 tools/bench/hbm_bound.py [--gib 8] [--iters 20] [--out FILE.csv]
"""
import argparse
import sys

import torch


def time_ms(fn, iters):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end))
    samples.sort()
    return samples[len(samples) // 2], samples[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=8.0, help="size of each buffer in GiB")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n = int(args.gib * (1 << 30)) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    rows = []

    med, best = time_ms(lambda: dst.copy_(src), args.iters)
    moved = 2 * src.numel() * 2
    rows.append(("d2d_copy", moved, med, best))

    med, best = time_ms(lambda: torch.sum(src, dtype=torch.float32), args.iters)
    rows.append(("read_only_sum", src.numel() * 2, med, best))

    lines = ["method,bytes,median_ms,best_ms,median_tbs,best_tbs"]
    for name, nbytes, med, best in rows:
        lines.append(f"{name},{nbytes},{med:.4f},{best:.4f},{nbytes / med / 1e9:.3f},{nbytes / best / 1e9:.3f}")
    bound = max(nbytes / med / 1e9 for _, nbytes, med, _ in rows)
    lines.append(f"honest_bound_median_tbs,,,,{bound:.3f},")
    text = "\n".join(lines)
    print(f"{torch.cuda.get_device_name()}: buffers of {args.gib} GiB, {args.iters} timed runs each")
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
