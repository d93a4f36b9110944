"""PyTorch baselines for the LoRA add-on of one projection at decode, one distinct adapter per row.

Punica's two baselines (MLSys'24, §5.1): a loop over adapters (one small GEMM pair per adapter) and
gather + bmm (stack every row's A and B, then two batched matmuls). Same shapes as
ai.punica.backend.cuda.SgmvBench: hidden 4096, bf16, batch 1-64, rank 8-64; median device time.
Then the prefill shapes of issue 14 (8 segments x 128 rows and 1 x 1024 rows, rank 16, 4096->4096 and
4096->11008), L2 flushed before each call as in SgmvBench's prefill table: a loop over segments (two GEMMs per
segment, cuBLAS on tensor cores) next to the best published SGMV's times (33 and 47 us).
Run on the GPU machine: python3 tools/bench/sgmv_torch.py
"""
import torch

def bench(fn, reps=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2] * 1e3  # microseconds

def bench_cold(fn, flush, reps=50):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); e.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2] * 1e3  # microseconds

def prefill(dev, dt):
    h, rank = 4096, 16
    flush = torch.empty(256 * 1024 * 1024 // 4, device=dev, dtype=torch.float32)  # 256 MB, above any L2
    print("TORCH prefill segs x rows in->out | segment loop us (cold) | target us")
    for segs, per in ((8, 128), (1, 1024)):
        for out in (4096, 11008):
            rows = segs * per
            x = torch.randn(rows, h, device=dev, dtype=dt)
            y = torch.randn(rows, out, device=dev, dtype=dt)
            A = torch.randn(segs, rank, h, device=dev, dtype=dt) * 0.05
            B = torch.randn(segs, out, rank, device=dev, dtype=dt) * 0.05

            def loop():
                for i in range(segs):
                    sl = slice(i * per, (i + 1) * per)
                    y[sl] += 2.0 * ((x[sl] @ A[i].t()) @ B[i].t())

            target = 33 if out == 4096 else 47
            print(f"TORCH prefill {segs} x {per:4d} {h}->{out:<5d} | {bench_cold(loop, flush):8.1f} | {target}")

def main():
    torch.manual_seed(0)
    h = 4096
    dev, dt = "cuda", torch.bfloat16
    print("device", torch.cuda.get_device_name(), "torch", torch.__version__)
    w = torch.randn(h, h, device=dev, dtype=dt) * 0.02
    prefill(dev, dt)
    print("TORCH batch rank | gemm us | loop us | gather+bmm us")
    for batch in (1, 8, 32, 64):
        x = torch.randn(batch, h, device=dev, dtype=dt)
        y = torch.randn(batch, h, device=dev, dtype=dt)
        gemm = bench(lambda: torch.matmul(x, w.t(), out=y))
        for rank in (8, 16, 32, 64):
            A = torch.randn(batch, rank, h, device=dev, dtype=dt) * 0.05
            B = torch.randn(batch, h, rank, device=dev, dtype=dt) * 0.05
            idx = torch.arange(batch, device=dev)

            def loop():
                for i in range(batch):
                    y[i:i + 1] += 2.0 * ((x[i:i + 1] @ A[i].t()) @ B[i].t())

            def gather_bmm():
                a = A[idx]                      # [batch, rank, h]
                b = B[idx]                      # [batch, h, rank]
                v = torch.bmm(a, x.unsqueeze(2))  # [batch, rank, 1]
                y.add_(torch.bmm(b, v).squeeze(2), alpha=2.0)

            print(f"TORCH {batch:5d} {rank:4d} | {gemm:7.1f} | {bench(loop):7.1f} | {bench(gather_bmm):7.1f}")

if __name__ == "__main__":
    main()
