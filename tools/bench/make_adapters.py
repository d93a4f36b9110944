"""Writes N random PEFT LoRA adapters for a Llama-2-7B-shaped base model, for the end-to-end throughput
comparison (ai.punica.bench.GenerateThroughputBench against tools/bench/hf_generate.py).

Each adapter is a directory OUT/a000, OUT/a001, ... with
  adapter_config.json        written by peft.LoraConfig.save_pretrained (r=16, lora_alpha=32, all seven
                             projections, task CAUSAL_LM), or by hand where peft is missing
  adapter_model.safetensors  the keys PEFT saves (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight,
                             ... .lora_B.weight), bf16, A [r, in] and B [out, r] normal with std 0.02
                             (non-zero B: the adapters change the output, as trained ones do)
A 7B-shaped adapter is about 80 MB; the tensors are drawn on the GPU when there is one.

  python3 tools/bench/make_adapters.py --out /tmp/adapters --count 64
  (--shape tiny writes adapters for GenerateThroughputBench's --shape tiny)
"""
import argparse
import json
import os
import sys
import time

import torch

SHAPES = {
    # hidden, intermediate, layers: as DecodeStepBench's LLAMA_7B and TINY configs
    "llama7b": (4096, 11008, 32),
    "tiny": (64, 160, 2),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def projections(hidden, inter):
    """(parent module, name, in_features, out_features) of one decoder layer (no GQA: k, v are hidden wide)."""
    return [("self_attn", "q_proj", hidden, hidden), ("self_attn", "k_proj", hidden, hidden),
            ("self_attn", "v_proj", hidden, hidden), ("self_attn", "o_proj", hidden, hidden),
            ("mlp", "gate_proj", hidden, inter), ("mlp", "up_proj", hidden, inter),
            ("mlp", "down_proj", inter, hidden)]


def write_config(directory, rank, alpha):
    try:
        from peft import LoraConfig
        LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                   task_type="CAUSAL_LM", init_lora_weights=False).save_pretrained(directory)
    except ImportError:
        with open(os.path.join(directory, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha,
                       "lora_dropout": 0.0, "bias": "none", "target_modules": TARGETS, "use_rslora": False,
                       "use_dora": False, "fan_in_fan_out": False, "inference_mode": True}, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="directory that receives a000, a001, ...")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama7b")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--force", action="store_true", help="rewrite adapters that are already there")
    args = ap.parse_args()
    from safetensors.torch import save_file

    hidden, inter, layers = SHAPES[args.shape]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(args.seed)
    alpha = int(args.alpha) if args.alpha == int(args.alpha) else args.alpha
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    total = 0
    kept = 0
    for n in range(args.count):
        directory = os.path.join(args.out, f"a{n:03d}")
        weights = os.path.join(directory, "adapter_model.safetensors")
        if not args.force and os.path.isfile(weights) and os.path.isfile(os.path.join(directory, "adapter_config.json")):
            kept += 1  # written by an earlier run (a file is only named adapter_model.safetensors once complete)
            continue
        os.makedirs(directory, exist_ok=True)
        write_config(directory, args.rank, alpha)
        tensors = {}
        for layer in range(layers):
            for parent, name, fan_in, fan_out in projections(hidden, inter):
                prefix = f"base_model.model.model.layers.{layer}.{parent}.{name}"
                for key, shape in (("lora_A", (args.rank, fan_in)), ("lora_B", (fan_out, args.rank))):
                    t = torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * args.std
                    tensors[f"{prefix}.{key}.weight"] = t.to(torch.bfloat16).cpu()
        save_file(tensors, weights + ".part", metadata={"format": "pt"})
        os.replace(weights + ".part", weights)
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    written = args.count - kept
    if written == 0:
        print(f"all {kept} adapters are already in {args.out} (--force rewrites them)", flush=True)
        return 0
    print(f"wrote {written} adapters (rank {args.rank}, alpha {alpha}, {args.shape}, "
          f"{total / written / 1e6:.1f} MB each) to {args.out} in {time.time() - t0:.1f} s"
          + (f"; kept {kept} already there" if kept else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
