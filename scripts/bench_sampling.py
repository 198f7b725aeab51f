"""Sampling throughput, same tiny model, prompts and settings, three ways:

  (a) raw vLLM `LLM.generate` in this process (the limit)
  (b) rlpractice's Ray sampler actors (`Samplers.sample`: what RL uses)
  (c) HF transformers `generate` (what TRL uses without vLLM)

    .venv/bin/python scripts/bench_sampling.py [checkpoint_dir]

Without a checkpoint it builds the default model shape (random weights; throughput does not depend
on what the weights say). Every completion is forced to the same length (`ignore_eos` / `min_new_tokens`),
so all three generate exactly the same number of tokens. Writes runs/bench/sampling.json with ratios.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"
PROMPTS, N, TOKENS, REPEATS = 32, 32, 48, 3


def setup(checkpoint: str | None):
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
        model = policy.new_model(tokenizer, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size,
                                 m.max_seq_len, seed=0)
        checkpoint = str(policy.save(model, tokenizer, OUT / "model"))
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


def hf_generate(prompts, checkpoint) -> float:
    from rlpractice import model as policy

    model, tokenizer = policy.load(checkpoint)
    model.eval()
    enc = [tokenizer(p, return_tensors="pt")["input_ids"] for p in prompts]

    def run():
        with torch.no_grad():
            for ids in enc:  # one prompt at a time, its N samples as one batch (TRL's layout)
                model.generate(ids, do_sample=True, temperature=1.0, max_new_tokens=TOKENS, min_new_tokens=TOKENS,
                               num_return_sequences=N, pad_token_id=tokenizer.pad_token_id)

    return best_of(run)


def main() -> None:
    cfg, prompts, checkpoint = setup(sys.argv[1] if len(sys.argv) > 1 else None)
    tokens = PROMPTS * N * TOKENS
    seconds = {"raw_vllm": raw_vllm(cfg, prompts, checkpoint)}
    gc.collect()  # the in-process engine is gone before the actors start
    seconds |= {
               "rlpractice_ray_actors": ray_actors(cfg, prompts, checkpoint),
                "hf_generate": hf_generate(prompts, checkpoint)}
    rate = {k: tokens / v for k, v in seconds.items()}
    result = {
        "setup": {"prompts": PROMPTS, "samples_per_prompt": N, "tokens_per_sample": TOKENS, "repeats": REPEATS,
                  "checkpoint": checkpoint, "torch_threads": torch.get_num_threads()},
        "seconds": seconds, "tokens_per_second": rate,
        "ratio_actors_vs_raw_vllm": rate["rlpractice_ray_actors"] / rate["raw_vllm"],
        "ratio_actors_vs_hf_generate": rate["rlpractice_ray_actors"] / rate["hf_generate"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sampling.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":  # vLLM starts worker processes with spawn
    main()
