"""PyTorch baselines for the LoRA add-on of one projection at decode, one distinct adapter per row.

Punica's two baselines (MLSys'24, §5.1): a loop over adapters (one small GEMM pair per adapter) and
gather + bmm (stack every row's A and B, then two batched matmuls). Same shapes as
ai.punica.backend.cuda.SgmvBench: hidden 4096, bf16, batch 1-64, rank 8-64; median device time.
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

def main():
    torch.manual_seed(0)
    h = 4096
    dev, dt = "cuda", torch.bfloat16
    print("device", torch.cuda.get_device_name(), "torch", torch.__version__)
    w = torch.randn(h, h, device=dev, dtype=dt) * 0.02
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
