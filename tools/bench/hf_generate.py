"""HF transformers + PEFT side of the end-to-end generation throughput comparison with
ai.punica.bench.GenerateThroughputBench: the same Llama-2-7B shape with random bf16 weights
(LlamaForCausalLM from a config, nothing downloaded), the same PEFT adapter directories
(tools/bench/make_adapters.py) loaded with PeftModel.from_pretrained / load_adapter, and the same batches:
b prompts of P random token ids, greedy, exactly G new tokens, rows assigned to adapters by Punica's
get_lora_lens (distinct, uniform, skewed, identical; "none" is the base model with the adapters disabled),
in one mixed batch through PEFT's `adapter_names`:

  model.generate(input_ids, attention_mask, adapter_names=[...], max_new_tokens=G, min_new_tokens=G,
                 do_sample=False)

Each case is one generate call after a warm-up, timed by a streamer that notes when each step's tokens
reach the host (generate copies them there for the streamer): TTFT is the first step's, TPOT the mean of
the rest. HF with tens of distinct adapters takes about half a second per step, so G_used may be shorter
than Punica's G (--hf-gen-len, and less when a case would not fit --case-cap-s); tokens/s at Punica's G is
b·G / (TTFT + (G - 1)·TPOT).
That extrapolation favours HF slightly (its later steps attend over a longer cache). Cases run distinct
first, smallest batch first; a case that no longer fits --budget-s is skipped and listed.

  python3 tools/bench/hf_generate.py --adapters /tmp/adapters --out $OUT/hf_generate.csv
  python3 tools/bench/hf_generate.py --compare $OUT/punica_generate.csv $OUT/hf_generate.csv
(--shape tiny --device cpu runs it at toy size without a GPU.)
"""
import argparse
import contextlib
import csv
import math
import os
import sys
import time

try:
    import torch
except ImportError:  # --compare needs no torch
    torch = None

SHAPES = {
    # as DecodeStepBench's LLAMA_7B and TINY
    "llama7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    "tiny": dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512),
}
FIELDS = ["workload", "batch", "adapters", "prompt_len", "gen_len_used", "ttft_ms", "wall_s", "tpot_ms",
          "tokens_per_s_measured", "target_gen_len", "tokens_per_s_at_target"]


def lora_lens(workload, bs):
    """Punica's get_lora_lens: rows per adapter, largest first (as DecodeStepBench.segmentLengths)."""
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
    raise KeyError(f"unknown workload {workload!r}; known: none, identical, uniform, skewed, distinct")


class StepTimes:
    """A generate streamer that only notes when each put (the prompt, then every step's tokens) arrives."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def adapter_dirs(root):
    return sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "adapter_config.json")))


def load_model(args, names):
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import PeftModel

    config = LlamaConfig(**SHAPES[args.shape], rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0)
    torch.manual_seed(args.seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    # Only construction runs under the device context (a default device would put a TorchFunctionMode in
    # front of every op of every timed step).
    with torch.device(args.device):
        model = LlamaForCausalLM(config).eval()
    torch.set_default_dtype(previous)
    t0 = time.time()
    # autocast_adapter_dtype=False keeps the bf16 adapters bf16 (PEFT would otherwise cast them to fp32).
    kwargs = dict(autocast_adapter_dtype=False, low_cpu_mem_usage=True)
    try:
        model = PeftModel.from_pretrained(model, os.path.join(args.adapters, names[0]), adapter_name=names[0],
                                          **kwargs)
    except TypeError:  # an older PEFT without one of the keywords
        kwargs = {}
        model = PeftModel.from_pretrained(model, os.path.join(args.adapters, names[0]), adapter_name=names[0])
    if args.load == "peft":
        for name in names[1:]:
            model.load_adapter(os.path.join(args.adapters, name), adapter_name=name, **kwargs)
    else:
        add_adapters_directly(model, args.adapters, names[1:], args.device)
    model.eval()
    dtypes = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
    devices = {p.device.type for n, p in model.named_parameters() if "lora_" in n}
    print(f"{len(names)} adapters loaded in {time.time() - t0:.1f} s (lora dtypes {sorted(map(str, dtypes))}, "
          f"devices {sorted(devices)})", flush=True)
    return model, config


def add_adapters_directly(model, root, names, device):
    """What load_adapter does for a plain LoRA adapter, without its scan of every module name against every
    existing adapter's prefixes, which makes loading N adapters take O(N²) time (about 2 minutes for 64 on a
    7B model): each LoRA layer gets the adapter through its own update_layer, the weights are copied in from
    the adapter's file, and the config is registered under the adapter's name. Forward and generate are
    PEFT's own, as after load_adapter (tools/bench/hf_generate.py --load peft checks that they agree)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import load_file

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    for name in names:
        directory = os.path.join(root, name)
        config = LoraConfig.from_pretrained(directory)
        config.inference_mode = True
        state = load_file(os.path.join(directory, "adapter_model.safetensors"), device=str(device))
        seen = set()
        for key, tensor in state.items():
            path, kind = key.rsplit(".lora_", 1)  # ...q_proj, "A.weight"
            layer = layers.get(path)
            if layer is None or kind not in ("A.weight", "B.weight"):
                raise ValueError(f"{directory}: tensor {key} has no LoRA layer in the model")
            if path not in seen:
                with torch.device(device):  # A and B made (and initialised) where they will live
                    layer.update_layer(name, config.r, config.lora_alpha, config)
                seen.add(path)
            target = (layer.lora_A if kind == "A.weight" else layer.lora_B)[name].weight
            if target.shape != tensor.shape:
                raise ValueError(f"{directory}: {key} has shape {tuple(tensor.shape)}, the layer {tuple(target.shape)}")
            with torch.no_grad():
                target.copy_(tensor)
        if len(seen) != len(layers):
            raise ValueError(f"{directory} adapts {len(seen)} of the model's {len(layers)} LoRA layers")
        model.peft_config[name] = config


def check_load(args, names):
    """Logits of one mixed batch (every adapter, then base rows) after --load direct and after --load peft."""
    logits = {}
    for how in ("peft", "direct"):
        args.load = how
        model, config = load_model(args, names)
        rows = names + ["__base__"] * 2
        ids = torch.randint(1, config.vocab_size, (len(rows), 16), generator=torch.Generator().manual_seed(7))
        with torch.inference_mode():
            logits[how] = model(input_ids=ids.to(args.device), adapter_names=rows).logits.float().cpu()
        del model
    diff = (logits["peft"] - logits["direct"]).abs().max().item()
    spread = (logits["peft"][0] - logits["peft"][-1]).abs().max().item()
    print(f"CHECK load direct vs peft ({len(names)} adapters): max |logit difference| {diff} "
          f"(adapter row vs base row: {spread})", flush=True)
    return 0 if diff == 0 and spread > 0 else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapters", help="directory of make_adapters.py's a000, a001, ...")
    ap.add_argument("--batches", default="8,16,32,64")
    ap.add_argument("--workloads", default="distinct,none,identical,uniform,skewed")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=128, help="Punica's G: tokens/s is also given for this G")
    ap.add_argument("--hf-gen-len", type=int, default=16, help="most tokens HF generates per case")
    ap.add_argument("--min-gen-len", type=int, default=4)
    ap.add_argument("--case-cap-s", type=float, default=25, help="shorten G_used so one case takes about this")
    ap.add_argument("--budget-s", type=float, default=240, help="start no case that would end after this")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama7b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--load", choices=["direct", "peft"], default="direct",
                    help="peft: load_adapter for every adapter (O(N²), minutes for 64); direct: see add_adapters_directly")
    ap.add_argument("--check-load", action="store_true",
                    help="load both ways on the given shape and compare mixed-batch logits, then exit")
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", nargs=2, metavar=("PUNICA_CSV", "HF_CSV"),
                    help="only print the side-by-side table of two CSVs")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
        return 0
    if not args.adapters:
        ap.error("--adapters is required (or --compare)")
    if torch is None:
        sys.exit("hf_generate.py needs torch, transformers, peft and safetensors (only --compare runs without)")
    t_start = time.time()
    batches = sorted(int(b) for b in args.batches.split(","))
    workloads = args.workloads.split(",")

    import transformers
    import peft
    dev = torch.device(args.device)
    gpu = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"device {gpu} torch {torch.__version__} transformers {transformers.__version__} peft {peft.__version__}",
          flush=True)
    names = adapter_dirs(args.adapters)
    needed = max((len(lora_lens(w, b)) for w in workloads if w != "none" for b in batches), default=0)
    if needed > len(names):
        sys.exit(f"{args.adapters} holds {len(names)} adapters; the workloads need {needed}: "
                 f"python3 tools/bench/make_adapters.py --out {args.adapters} --count {needed}")
    names = names[:max(needed, 1)]
    if args.check_load:
        return check_load(args, names[:6])
    model, config = load_model(args, names)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        print(f"model + adapters ready {time.time() - t_start:.1f} s after start; GPU memory "
              f"{torch.cuda.memory_allocated() / 1e9:.1f} GB", flush=True)
    gen = torch.Generator(device=dev).manual_seed(args.seed)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def generate(ids, rows, tokens):
        """(wall, TTFT, TPOT) seconds of one generate call of exactly `tokens` new tokens per row."""
        streamer = StepTimes()
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                      min_new_tokens=tokens, do_sample=False, pad_token_id=0, streamer=streamer)
        # "none" is the base model: the adapters are switched off around the call, outside the timed part
        # (switching visits every LoRA module, about 2 s with 64 adapters resident).
        with model.disable_adapter() if rows is None else contextlib.nullcontext():
            sync()
            t0 = time.perf_counter()
            out = model.generate(**kwargs) if rows is None else model.generate(**kwargs, adapter_names=rows)
            sync()
            wall = time.perf_counter() - t0
        if out.shape != (ids.shape[0], ids.shape[1] + tokens):
            raise RuntimeError(f"generate returned shape {tuple(out.shape)}, expected "
                               f"{(ids.shape[0], ids.shape[1] + tokens)}")
        steps = streamer.times[1:]  # the first put is the prompt
        if len(steps) != tokens:
            raise RuntimeError(f"the streamer saw {len(steps)} steps, expected {tokens}")
        tpot = (steps[-1] - steps[0]) / (tokens - 1) if tokens > 1 else 0.0
        return wall, steps[0] - t0, tpot

    def rows_of(workload, bs):
        if workload == "none":
            return None
        return [names[i] for i, n in enumerate(lora_lens(workload, bs)) for _ in range(n)]

    def prompts(bs):
        return torch.randint(1, config.vocab_size, (bs, args.prompt_len), device=dev, generator=gen)

    with torch.inference_mode():
        t0 = time.time()
        for w in ("none", workloads[0]):
            generate(prompts(batches[0]), rows_of(w, batches[0]), min(4, args.hf_gen_len))
        print(f"warm-up in {time.time() - t0:.1f} s", flush=True)

        results, skipped = [], []
        step_per_adapter = None  # seconds of one decode step per (adapters + 1), the largest seen
        print("HF workload batch adapters | G used  TTFT ms   wall s  TPOT ms | tok/s meas. | tok/s at G="
              f"{args.gen_len}", flush=True)
        for workload in workloads:
            for bs in batches:
                n = 0 if workload == "none" else len(lora_lens(workload, bs))
                g = args.hf_gen_len
                est_step = None if step_per_adapter is None else step_per_adapter * (n + 1)
                if est_step is not None:
                    g = max(args.min_gen_len, min(g, int(args.case_cap_s / est_step)))
                    est_case = (g + 2) * est_step  # the prefill costs about a step or two (HF is overhead bound)
                    if time.time() - t_start + est_case > args.budget_s:
                        skipped.append(f"{workload}/{bs}")
                        print(f"HF {workload} batch {bs}: skipped, about {est_case:.0f} s left no room in the "
                              f"budget of {args.budget_s:.0f} s", flush=True)
                        continue
                rows = rows_of(workload, bs)
                try:
                    wall, ttft, tpot = generate(prompts(bs), rows, g)
                except Exception as e:  # report and go on: one failing case must not lose the others
                    print(f"HF {workload} batch {bs} failed: {type(e).__name__}: {e}", flush=True)
                    skipped.append(f"{workload}/{bs} (failed)")
                    continue
                if g == 1:
                    tpot = ttft
                step_per_adapter = max(step_per_adapter or 0, tpot / (n + 1))
                at_target = bs * args.gen_len / (ttft + (args.gen_len - 1) * tpot)
                r = dict(workload=workload, batch=bs, adapters=n, prompt_len=args.prompt_len, gen_len_used=g,
                         ttft_ms=round(ttft * 1e3, 2), wall_s=round(wall, 4), tpot_ms=round(tpot * 1e3, 3),
                         tokens_per_s_measured=round(bs * g / wall, 2), target_gen_len=args.gen_len,
                         tokens_per_s_at_target=round(at_target, 2))
                results.append(r)
                print(f"HF {workload:9s} {bs:5d} {n:8d} | {g:6d} {r['ttft_ms']:8.1f} {wall:8.2f} {r['tpot_ms']:8.2f}"
                      f" | {r['tokens_per_s_measured']:11.1f} | {at_target:10.1f}", flush=True)
                if args.out:  # rewritten after every case: a later crash or time-out keeps what was measured
                    with open(args.out, "w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=FIELDS)
                        w.writeheader()
                        w.writerows(results)
        if skipped:
            print(f"HF cases not measured: {', '.join(skipped)}", flush=True)
        print(f"HF total {time.time() - t_start:.0f} s", flush=True)
    return 0


def compare(punica_csv, hf_csv):
    """Punica-J's and HF's tokens/s per (workload, batch), and the speedup."""
    def read(path):
        try:
            with open(path) as f:
                return {(r["workload"], int(r["batch"])): r for r in csv.DictReader(f)}
        except OSError as e:
            print(f"cannot read {path}: {e}")
            return {}

    pj, hf = read(punica_csv), read(hf_csv)
    shapes = {(p["prompt_len"], p["gen_len"]) for p in pj.values()}
    hf_shapes = {(h["prompt_len"], h["target_gen_len"]) for h in hf.values()}
    if hf_shapes and shapes != hf_shapes:
        print(f"WARNING: prompt and generation lengths differ: Punica-J {shapes}, HF {hf_shapes}")
    print("\nSIDE BY SIDE: end-to-end generation, same GPU, same call (HF tokens/s at Punica's G: see hf_generate.py)")
    distinct = {}
    print("workload  batch adapters | Punica-J tok/s  TPOT ms  TTFT ms | HF+PEFT tok/s  TPOT ms  TTFT ms  G used |"
          " speedup")
    for key in sorted(pj, key=lambda k: (["none", "identical", "uniform", "skewed", "distinct"].index(k[0])
                                          if k[0] in ("none", "identical", "uniform", "skewed", "distinct") else 9,
                                          k[1])):
        p = pj[key]
        h = hf.get(key)
        line = (f"{key[0]:9s} {key[1]:5d} {int(p['adapters']):8d} | {float(p['tokens_per_s']):14.1f} "
                f"{float(p['tpot_ms_mean']):8.2f} {float(p['ttft_ms_mean']):8.1f} | ")
        if h is None:
            line += f"{'not measured':>13s} {'':8s} {'':8s} {'':7s} |"
        else:
            hf_tps = float(h["tokens_per_s_at_target"])
            speedup = float(p['tokens_per_s']) / hf_tps
            if key[0] == "distinct":
                distinct[key[1]] = speedup
            line += (f"{hf_tps:13.1f} {float(h['tpot_ms']):8.2f} {float(h['ttft_ms']):8.1f} {int(h['gen_len_used']):7d} |"
                     f" {speedup:7.1f}x")
        print(line)
    if distinct:
        print("distinct, Punica-J tokens/s ÷ HF+PEFT tokens/s (target ≥ 100x): "
              + ", ".join(f"batch {b}: {x:.1f}x" for b, x in sorted(distinct.items())))


if __name__ == "__main__":
    sys.exit(main())
