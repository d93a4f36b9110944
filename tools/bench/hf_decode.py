"""HF transformers + PEFT baseline for ai.punica.bench.DecodeStepBench: the same Llama-2-7B shape with
random bf16 weights (nothing downloaded), rank-16 LoRA on all seven projections in up to 64 adapters,
one decode step per sequence at context 512, Punica's workloads (get_lora_lens) via PEFT's mixed-batch
`adapter_names`. A step is one forward with the KV cache plus argmax of the last logits to the host
(Punica-J's step copies the logits to the host); wall time with torch.cuda.synchronize, median.

Run on the GPU machine after DecodeStepBench, in the same call:
  python3 tools/bench/hf_decode.py --punica $OUT/punica_decode.csv --out $OUT/hf_decode.csv
It prints HF's table, then Punica-J's and HF's tokens/s side by side.
"""
import argparse
import csv
import math
import statistics
import sys
import time

import torch


def lora_lens(workload, bs):
    """Punica's get_lora_lens: rows per adapter, largest first."""
    if workload in ("none", "identical"):
        return [bs]
    if workload == "distinct":
        return [1] * bs
    if workload == "uniform":
        n = math.ceil(math.sqrt(bs))
        return [bs // n + (1 if i < bs % n else 0) for i in range(n)]
    if workload == "skewed":
        lens, a = [], 1.0
        while sum(lens) + math.floor(a) < bs:
            lens.append(math.floor(a))
            a *= 1.5
        lens.append(bs - sum(lens))
        return sorted(lens, reverse=True)
    raise KeyError(workload)


def main():
    ap = argparse.ArgumentParser()
    # Largest first: the headline rows (32 and 64 distinct) are measured before the time budget runs out.
    ap.add_argument("--batches", default="64,32,16,8,4,2,1")
    ap.add_argument("--workloads", default="distinct,none,identical,uniform,skewed")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=300, help="start no new batch size after this")
    ap.add_argument("--punica", default=None, help="DecodeStepBench's CSV, for the side-by-side table")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    workloads = args.workloads.split(",")
    t_start = time.time()

    import transformers
    import peft
    from transformers import LlamaConfig, LlamaForCausalLM, DynamicCache
    from peft import LoraConfig, get_peft_model

    print(f"device {torch.cuda.get_device_name()} torch {torch.__version__} transformers {transformers.__version__} "
          f"peft {peft.__version__}", flush=True)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                         num_hidden_layers=args.layers, num_attention_heads=32, num_key_value_heads=32,
                         max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0)
    n_adapters = max(batches)
    lcfg = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, init_lora_weights=False,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # Only construction runs under the device context: torch.set_default_device would put a Python
    # TorchFunctionMode in front of every op of every timed step too.
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).eval()
        model = get_peft_model(model, lcfg, adapter_name="a0")
        for i in range(1, n_adapters):
            model.add_adapter(f"a{i}", lcfg)
    model.eval()
    torch.cuda.synchronize()
    print(f"model + {n_adapters} adapters ready in {time.time() - t_start:.1f} s; "
          f"attn_implementation={getattr(model.config, '_attn_implementation', '?')}; "
          f"GPU memory {torch.cuda.memory_allocated() / 1e9:.1f} GB", flush=True)

    def new_cache():
        try:
            return DynamicCache(config=config)
        except TypeError:
            return DynamicCache()

    prefix = args.context - 1
    results = []
    print("HF workload batch adapters | median ms  min  max | tokens/s", flush=True)
    with torch.inference_mode():
        for bs in batches:
            if time.time() - t_start > args.budget_s:
                print(f"budget of {args.budget_s} s spent; skipping batch {bs} and larger", flush=True)
                break
            ids = torch.randint(1, 32000, (bs, prefix), device="cuda")
            base_rows = ["__base__"] * bs  # PEFT's name for rows that use no adapter in a mixed batch

            def prefill():
                c = new_cache()
                model(input_ids=ids, past_key_values=c, use_cache=True, logits_to_keep=1, adapter_names=base_rows)
                return c

            cache = prefill()
            tok = torch.randint(1, 32000, (bs, 1), device="cuda")
            for workload in workloads:
                lens = lora_lens(workload, bs)
                names = base_rows if workload == "none" else [f"a{i}" for i, n in enumerate(lens) for _ in range(n)]

                def step():
                    out = model(input_ids=tok, past_key_values=cache, use_cache=True, adapter_names=names)
                    return out.logits[:, -1].argmax(-1).tolist()

                try:
                    times = []
                    for i in range(args.warmup + args.steps):
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        step()
                        torch.cuda.synchronize()
                        if i >= args.warmup:
                            times.append((time.perf_counter() - t0) * 1e3)
                        try:
                            cache.crop(-1)  # drop the token just decoded: every step decodes token `context`
                        except Exception:
                            cache = prefill()
                except Exception as e:
                    print(f"HF {workload} batch {bs} failed: {type(e).__name__}: {e}", flush=True)
                    continue
                med = statistics.median(times)
                adapters = 0 if workload == "none" else len(lens)
                print(f"HF {workload:9s} {bs:5d} {adapters:8d} | {med:9.2f} {min(times):5.2f} {max(times):5.2f} | "
                      f"{bs / med * 1e3:8.1f}", flush=True)
                results.append(dict(workload=workload, batch=bs, adapters=adapters, median_ms=med,
                                    tokens_per_s=bs / med * 1e3))
            del cache
            torch.cuda.empty_cache()

    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(results[0].keys()))
            w.writeheader()
            w.writerows(results)
    if args.punica:
        try:
            with open(args.punica) as f:
                pj = {(r["workload"], int(r["batch"])): r for r in csv.DictReader(f)}
        except OSError as e:
            print(f"no Punica-J results to compare ({e})")
            return
        print("\nSIDE BY SIDE (tokens/s of one decode step, context 512, rank 16, same GPU, same call)")
        print("workload  batch | Punica-J ms  tok/s  %bound | HF+PEFT ms   tok/s | speedup")
        for r in results:
            p = pj.get((r["workload"], r["batch"]))
            if p is None:
                continue
            pms = float(p["median_ms"])
            print(f"{r['workload']:9s} {r['batch']:5d} | {pms:11.2f} {float(p['tokens_per_s']):6.0f} "
                  f"{float(p['pct_of_bound']):6.1f}% | {r['median_ms']:10.2f} {r['tokens_per_s']:7.1f} | "
                  f"{r['median_ms'] / pms:6.1f}x")


if __name__ == "__main__":
    sys.exit(main())
