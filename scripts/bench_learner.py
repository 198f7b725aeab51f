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

    .venv/bin/python scripts/bench_learner.py --mode default [--baseline 1b9968e] [--repeats 5] [--threads N]
        [--out FILE]

`--mode default` times the default RL update (GRPO, fp32, shared prompts, token budget 8192) on the default
experiment's batch: 32 prompts of 23-43 tokens (as the math textbook's prompts tokenise) x 32 samples of 4-56
completion tokens (mean ~30, as completions/mean_length runs in a default run), the tiny model with the default
tokenizer's 603 ids, two of the 32 groups left out as zero-advantage. It runs the learner of commit --baseline
(loaded from git, the code before the speed-up) and the current one on the same model and batch, alternating
old and new --repeats times, and reports the median of each and their ratio, with the largest gap between the
two paths' gradients. The speed-up is the median over repeats of old / new, each pair back to back, so
that a neighbour's load drifting across the run weighs on both sides alike. Beside it, the roofline: GFLOP/s
of a 2048 x 2048 fp32 torch.matmul (and of the same product through oneDNN), best of the measurements
before and after the update timings in the same process.

FLOPs counted, per step: `model_flops` is the work the update needs, whichever path: each linear layer's
2 x weights FLOPs per token forward and 4 x backward (input and weight gradients), over each distinct prompt's
tokens once and every completion token, with the lm_head on completion positions and each prompt's last one;
plus attention's QK^T and PV, 4 x hidden FLOPs per (query, visible key) pair per layer forward, x3 with the
backward. `executed_flops` counts what a path computes: padding, prompts recomputed in each micro-batch,
logits no loss reads and masked attention pairs included. Achieved FLOP/s = model_flops / median step time.
A torch.profiler pass over one update of each path gives where the time goes (`profile`), by kind of op.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from functools import partial
from pathlib import Path

import torch
from bench_meta import meta  # scripts/ is on sys.path when a script runs
from transformers import LlamaConfig, LlamaForCausalLM

from rlpractice import learner as current_learner
from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner import Sequence, lm_step, place, policy_gradient_step

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (128, 4, 4, 4, 512, 768),
    "small": (512, 8, 8, 8, 1536, 8192),
    "0.5b": (896, 24, 14, 2, 4864, 151936),
}


def build(size: str) -> LlamaForCausalLM:
    hidden, layers, heads, kv, inter, vocab = SIZES[size]
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                        num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                                        max_position_embeddings=4096, tie_word_embeddings=False))


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
                policy_gradient_step, model, opt, seqs, None, loss, pad_id=0, share_prompts=share, bf16=bf16)
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


def baseline_learner(commit: str) -> types.ModuleType:
    """rlpractice/learner.py as it was at `commit`, imported under another name beside the current one."""
    text = subprocess.run(["git", "show", f"{commit}:rlpractice/learner.py"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout
    module = types.ModuleType("learner_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up by name
    exec(compile(text, f"{commit}:rlpractice/learner.py", "exec"), module.__dict__)
    return module


def default_batch(sequence_cls, vocab: int, prompts: int = 32, group: int = 32, zero_groups: int = 2):
    """The learned sequences of a default RL step (see the docstring), and the whole batch's counts."""
    g = torch.Generator().manual_seed(0)
    seqs, every, tokens = [], 0, 0
    for p in range(prompts):
        prompt = [0] + torch.randint(2, vocab, (int(torch.randint(22, 43, (1,), generator=g)),), generator=g).tolist()
        for j in range(group):
            n = int(torch.randint(4, 57, (1,), generator=g))
            s = sequence_cls(prompt + torch.randint(2, vocab, (n,), generator=g).tolist(), [0] * len(prompt) + [1] * n,
                             0.0 if p < zero_groups else (1.0 if j % 2 else -1.0))
            every, tokens = every + 1, tokens + n
            if s.advantage != 0:
                seqs.append(s)
    return seqs, every, tokens


def matmul_gflops(onednn: bool, n: int = 2048, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n x n fp32 product: torch.matmul, or the same through oneDNN."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    product = (lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")) if onednn else (lambda: a @ b)
    product()
    best = min(timed_once(product) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def timed_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def count_flops(model, seqs: list[Sequence], token_budget: int, learner) -> dict:
    """`model_flops` and `executed_flops` of one update (see the docstring), with the token counts behind them."""
    cfg = model.config
    head = cfg.vocab_size * cfg.hidden_size
    body = sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name != "lm_head")
    per_pair = 12 * cfg.hidden_size * cfg.num_hidden_layers  # attention, forward and backward, all layers
    starts = [learner.prompt_length(s) for s in seqs]
    prompts = {tuple(s.ids[:p]) for s, p in zip(seqs, starts, strict=True)}
    comp = [len(s.ids) - p for s, p in zip(seqs, starts, strict=True)]
    model_flops = (6 * body * (sum(map(len, prompts)) + sum(comp)) + 6 * head * (len(prompts) + sum(comp))
                   + per_pair * (sum(len(p) * (len(p) + 1) // 2 for p in prompts)
                                 + sum(c * p + c * (c + 1) // 2 for p, c in zip(starts, comp, strict=True))))
    batches = learner._microbatches(seqs, token_budget, True)
    once = getattr(learner, "step_prompts", None) is not None and len(batches) > 1 and \
        len(prompts) * max(map(len, prompts)) <= token_budget
    executed, prompt_tokens, comp_tokens, widest = 0, 0, 0, max(map(len, prompts))
    if once:
        prompt_tokens = len(prompts) * widest
        executed += 6 * body * prompt_tokens + 6 * head * len(prompts) + per_pair * len(prompts) * widest * widest
    for idx in batches:
        mine = {tuple(seqs[i].ids[: starts[i]]) for i in idx}
        width, cw = widest if once else max(map(len, mine)), max(comp[i] for i in idx)
        if not once:  # this micro-batch's prompts, logits at every position
            prompt_tokens += len(mine) * width
            executed += 6 * (body + head) * len(mine) * width + per_pair * len(mine) * width * width
        comp_tokens += len(idx) * cw
        executed += 6 * (body + head) * len(idx) * cw + per_pair * len(idx) * cw * (width + cw)
    return {"model_flops": model_flops, "executed_flops": executed, "micro_batches": len(batches),
            "prompt_tokens_run": prompt_tokens, "completion_tokens_run": comp_tokens,
            "distinct_prompt_tokens": sum(map(len, prompts)), "completion_tokens": sum(comp)}


PROFILE_KINDS = {  # torch.profiler op name -> kind; the rest is "other"
    "linear products": ("aten::mm", "aten::addmm", "mkldnn::_linear_pointwise"),
    "attention products": ("aten::bmm",),
    "elementwise": ("aten::mul", "aten::add", "aten::add_", "aten::silu", "aten::silu_backward", "aten::div",
                    "aten::pow", "aten::neg", "aten::rsqrt", "aten::mean", "aten::sum", "aten::exp", "aten::where",
                    "aten::fill_", "aten::zero_", "aten::masked_fill_", "aten::clamp", "aten::lerp_",
                    "aten::addcmul_", "aten::addcdiv_", "aten::sqrt", "aten::_foreach_add_"),
    "softmax and log-softmax": ("aten::_softmax", "aten::_softmax_backward_data", "aten::_log_softmax",
                                "aten::_log_softmax_backward_data"),
    "copies, concatenation, indexing": ("aten::copy_", "aten::cat", "aten::index", "aten::_index_put_impl_",
                                        "aten::index_select", "aten::index_add_", "aten::gather",
                                        "aten::scatter_add_", "aten::embedding_dense_backward", "aten::clone"),
}


def profile(step) -> dict:
    """Self CPU seconds of one update by kind of op (under the profiler's own overhead)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    kinds = {kind: 0.0 for kind in [*PROFILE_KINDS, "other"]}
    for e in prof.key_averages():
        kind = next((k for k, names in PROFILE_KINDS.items() if e.key in names), "other")
        kinds[kind] += e.self_cpu_time_total / 1e6
    total = sum(kinds.values())
    return {"total_s": total, "seconds": kinds, "fraction": {k: v / total for k, v in kinds.items()}}


def bench_default(args) -> dict:
    """Old (`--baseline`) vs current learner on the default RL update; see the docstring."""
    old = baseline_learner(args.baseline)
    hidden, layers, heads, kv, inter, _ = SIZES["tiny"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=args.vocab, hidden_size=hidden, num_hidden_layers=layers,
                                         num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                                         max_position_embeddings=256, tie_word_embeddings=False))
    place(model, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # the full AdamW step, weights unchanged between repeats
    loss = LossSettings(aggregation="seq_mean_token_mean", token_budget=8192, max_tokens=64)
    steps, grads = {}, {}
    for name, learner in (("old", old), ("new", current_learner)):
        seqs, every, tokens = default_batch(learner.Sequence, args.vocab)
        steps[name] = partial(learner.policy_gradient_step, model, opt, seqs, None, loss, pad_id=1,
                              num_sequences=every, num_tokens=tokens, share_prompts=True)
        steps[name]()  # warm-up
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters()])
    gap = float((grads["old"] - grads["new"]).abs().max() / grads["old"].abs().max())
    roofline_before = {"torch_matmul": matmul_gflops(False), "onednn": matmul_gflops(True)}
    load_before = os.getloadavg()
    times = {"old": [], "new": []}
    for r in range(args.repeats):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            times[name].append(timed_once(steps[name]))
    load_after = os.getloadavg()
    roofline_after = {"torch_matmul": matmul_gflops(False), "onednn": matmul_gflops(True)}
    roofline = {k: max(roofline_before[k], roofline_after[k]) for k in roofline_before}
    seqs = default_batch(Sequence, args.vocab)[0]
    flops = {name: count_flops(model, seqs, loss.token_budget, learner)
             for name, learner in (("old", old), ("new", current_learner))}
    median = {k: statistics.median(v) for k, v in times.items()}
    achieved = {k: flops[k]["model_flops"] / median[k] / 1e9 for k in median}
    pairs = [o / n for o, n in zip(times["old"], times["new"], strict=True)]  # each pair ran back to back
    out = {"speedup_new_over_old": statistics.median(pairs), "speedup_of_medians": median["old"] / median["new"],
           "step_s_old": median["old"],
           "step_s_new": median["new"], "matmul_roofline_gflops": roofline["torch_matmul"],
           "onednn_matmul_gflops": roofline["onednn"], "achieved_gflops_old": achieved["old"],
           "achieved_gflops_new": achieved["new"],
           "achieved_over_roofline_new": achieved["new"] / roofline["torch_matmul"],
           "max_gradient_gap": gap, "times_s": times, "roofline_before": roofline_before,
           "roofline_after": roofline_after, "threads": torch.get_num_threads(),
           "load_average_before_after": [load_before[0], load_after[0]], "flops": flops,
           "sequences": len(seqs), "params": sum(p.numel() for p in model.parameters())}
    out["profile"] = {name: profile(steps[name]) for name in ("old", "new")}
    print(f"[bench_learner] default RL update: old {median['old']:.3f} s, new {median['new']:.3f} s, "
          f"{out['speedup_new_over_old']:.2f}x; roofline {roofline['torch_matmul']:.0f} GFLOP/s (oneDNN "
          f"{roofline['onednn']:.0f}); achieved old {achieved['old']:.0f}, new {achieved['new']:.0f} GFLOP/s",
          flush=True)
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
    parser.add_argument("--mode", choices=["sizes", "default"], default="sizes",
                        help="sizes: per model size, precision and path; default: the default RL update, old vs new")
    parser.add_argument("--baseline", default="1b9968e", help="--mode default: the commit whose learner is 'old'")
    parser.add_argument("--vocab", type=int, default=603, help="--mode default: the tokenizer's size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "default":
        result = {**meta(), "mode": "default", "device": "cpu", "torch": torch.__version__, "args": vars(args),
                  **bench_default(args)}
        out = Path(args.out) if args.out else ROOT / "runs" / "bench" / "learner_default_cpu.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        return
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
