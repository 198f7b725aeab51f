"""The learner's speed on this machine's device: one RL update (GRPO's clipped policy gradient) and one SFT
step, per model size, precision and forward path. Peers in the same run: bf16 autocast vs fp32, and shared
prompts (each group's prompt run once per micro-batch) vs every sample recomputing its prompt.

    .venv/bin/python scripts/bench_learner.py [--sizes tiny,small] [--prompts 8] [--group 16]
        [--prompt-len 128] [--completion-len 256] [--token-budget 8192] [--repeats 3] [--out FILE]

Models are random-weight Llamas built from a config (no download): tiny = the default experiment's model,
small = ~30M parameters, 0.5b = Qwen2.5-0.5B's shape (24 layers, hidden 896, 14 heads / 2 KV heads, vocab
151,936). Sequences are random tokens: speed does not depend on what they say. Completion lengths are drawn
between half and all of --completion-len, as sampled completions vary. Reports per setting the median
seconds of --repeats steps (after one warm-up), completion tokens per second, and peak memory (CUDA's
allocator, or the process's RSS on a CPU). Writes runs/bench/learner_<device>.json unless --out.

The one-off comparison of the learner before and after its CPU speed-up (oneDNN linear layers, prompts run once per
step; `--mode default` of commit f2e0d79, timing the learner of an older commit) left this tool; its result stays in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from bench_meta import ROOT, SIZES, build, meta  # scripts/ is on sys.path when a script runs

from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.device import place
from rlpractice.learner.forward import Sequence
from rlpractice.learner.steps import lm_step, policy_gradient_step


def rl_batch(vocab: int, prompts: int, group: int, prompt_len: int, completion_len: int) -> list[Sequence]:
    g = torch.Generator().manual_seed(0)
    seqs = []
    for _ in range(prompts):
        prompt = torch.randint(2, vocab, (prompt_len,), generator=g).tolist()
        for j in range(group):
            n = int(torch.randint(completion_len // 2, completion_len + 1, (1,), generator=g))
            comp = torch.randint(2, vocab, (n,), generator=g).tolist()
            seqs.append(Sequence(prompt + comp, [0] * prompt_len + [1] * n, advantage=1.0 if j % 2 else -1.0))
    return seqs


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux; the process's peak so far


def timed(step, device: torch.device, repeats: int) -> list[float]:
    step()  # warm-up: kernels, allocator pools, optimizer state
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def bench_size(size: str, device: torch.device, args) -> dict:
    model = build(size)
    place(model, device.type)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)  # tiny steps: the weights stay near their start
    seqs = rl_batch(model.config.vocab_size, args.prompts, args.group, args.prompt_len, args.completion_len)
    completion_tokens = sum(sum(s.loss_mask) for s in seqs)
    all_tokens = sum(len(s.ids) for s in seqs)
    out = {"params": sum(p.numel() for p in model.parameters()), "sequences": len(seqs),
           "completion_tokens": completion_tokens, "all_tokens": all_tokens, "settings": {}}
    steps = {}
    loss = LossSettings(aggregation="token_mean", token_budget=args.token_budget, max_tokens=args.completion_len)
    for bf16 in (False, True):
        precision = "bf16" if bf16 else "fp32"
        for share in (True, False):
            steps[f"rl_{precision}_{'shared' if share else 'collate'}"] = partial(
                policy_gradient_step, model, opt, seqs, loss, pad_id=0, share_prompts=share, bf16=bf16)
        steps[f"sft_{precision}"] = partial(lm_step, model, opt, seqs, 0, args.token_budget, 1.0, bf16=bf16)
    for name, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        s = statistics.median(timed(step, device, args.repeats))
        # SFT learns the same completion tokens (its loss mask is RL's); both rates count them
        out["settings"][name] = {"step_s": s, "completion_tok_per_s": completion_tokens / s,
                                 "peak_memory_gb": peak_memory_gb(device)}
        print(f"[bench_learner] {size} {name}: {s:.3f} s, {completion_tokens / s:,.0f} tok/s", flush=True)
    st = out["settings"]
    out["ratios"] = {  # > 1: the first is faster
        "bf16_over_fp32_rl_shared": st["rl_fp32_shared"]["step_s"] / st["rl_bf16_shared"]["step_s"],
        "shared_over_collate_fp32": st["rl_fp32_collate"]["step_s"] / st["rl_fp32_shared"]["step_s"],
        "shared_over_collate_bf16": st["rl_bf16_collate"]["step_s"] / st["rl_bf16_shared"]["step_s"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,small", help=f"comma-separated, of {list(SIZES)}")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=16, help="samples per prompt")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--completion-len", type=int, default=256)
    parser.add_argument("--token-budget", type=int, default=8192, help="padded tokens per micro-batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {**meta(), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "args": vars(args), "sizes": {}}
    for size in args.sizes.split(","):
        result["sizes"][size] = bench_size(size, device, args)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the last size's model and optimizer are gone: give their memory back
    out = Path(args.out) if args.out else ROOT / "runs" / "bench" / f"learner_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({s: r["ratios"] for s, r in result["sizes"].items()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
