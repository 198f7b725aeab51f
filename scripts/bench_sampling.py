"""Sampling throughput, same model, prompts and settings, three ways:

  (a) raw vLLM `LLM.generate`, without Ray (the limit): one engine in one process, and the same engines
      the actors run (`sampler.num_samplers`, each pinned to its own cores, one process each, the prompts
      shared out as the actors get them)
  (b) rlpractice's Ray sampler actors (`Samplers.sample`: what RL uses)
  (c) HF transformers `generate` (what TRL uses without vLLM)

    .venv/bin/python scripts/bench_sampling.py [--checkpoint DIR] [--hidden 128 --layers 4 --heads 4]
                                               [--samplers N] [--stop-at-eos] [--logprobs]
                                               [--separate-engine-process] [--engine KEY=VALUE ...]

Without a checkpoint it builds a model of the given shape (default: the default model's; random
weights: throughput does not depend on what the weights say). HF `generate` runs in two layouts: one
call per prompt with its N samples (`num_return_sequences`), and all prompts x N in one left-padded
batch (TRL's layout: it generates the whole generation batch in one call); the faster one is the peer.
Every completion is forced to the same length (`ignore_eos` / `min_new_tokens`), so all generate exactly
the same number of tokens; with --stop-at-eos completions end at end-of-text as in RL, and each method's
tokens/s counts the tokens it returned. --samplers sets the number of engines (`sampler.num_samplers`,
default: the config's; each computes on `sampler.num_cpus_per_sampler` cores of its own). Writes
runs/bench/sampling.json (sampling_h<hidden>_l<layers>.json for another shape; `_s<N>` with --samplers,
`_eos` with --stop-at-eos, `_lp` with --logprobs, `_mp` with --separate-engine-process) with the ratios.
Without --logprobs no method returns log-probs, as in RL's default synchronous steps (vLLM's are asked for
on every `rl.logprob_mismatch_every`-th step only); with it the vLLM runs return the sampled tokens'.
--engine max_num_seqs=256 (repeatable) sets `sampler.engine.*` for the vLLM runs, to compare engine settings
on one machine (output name `_engine`). HF `generate` runs in float32 (the learner's dtype) and in the engines'
dtype (`sampler.engine.dtype`); the faster is the peer. The raw engines send the actors' requests
(`sampling_params`: no detokenization).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from bench_meta import meta  # scripts/ is on sys.path when a script runs
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

# Not rlpractice.rollout.samplers up here: it imports torch, and a raw engine's process (which imports this
# module) must set its thread environment before torch loads (`raw_engine`).
from rlpractice.rollout.engine import engine_cores, sampling_params, set_engine_threads

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench"
PROMPTS, N, TOKENS, REPEATS = 32, 32, 48, 3


def setup(checkpoint: str | None, shape: argparse.Namespace):
    from rlpractice import config_schema, hardware  # noqa: F401 - config_schema registers the schema; no torch here
    from rlpractice import model as policy
    from rlpractice.textbook.math_textbook import build_textbook
    from rlpractice.tokenizer import train_tokenizer

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=math"])
    hardware.resolve_sampler(cfg.sampler, hardware.probe(cuda=False))  # the engines a run would start here
    book = build_textbook(0, 2000, 200, PROMPTS, 8, answer_only_fraction=0.5)
    prompts = [p.prompt for p in book.practice[:PROMPTS]]
    if checkpoint is None:
        m = cfg.model
        tokenizer = train_tokenizer(book.exposition, m.vocab_size)
        model = policy.new_model(tokenizer, shape.hidden, shape.layers, shape.heads, 4 * shape.hidden,
                                 m.max_seq_len, seed=0)
        checkpoint = str(policy.save(model, tokenizer, OUT / f"model_h{shape.hidden}_l{shape.layers}"))
    else:
        model, _ = policy.load(checkpoint)
    return cfg, prompts, checkpoint, policy.num_params(model)


def best_of(fn) -> tuple[float, int]:
    """(seconds, tokens generated) of the fastest of REPEATS runs (after one warm-up); `fn` returns its
    number of generated tokens (up to and including each completion's end-of-text)."""
    fn()
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        tokens = fn()
        runs.append((time.perf_counter() - start, tokens))
    return min(runs)


def raw_engine(cfg, prompts, checkpoint, ignore_eos: bool, logprobs: bool, cores: list[int] | None, barrier,
               results) -> None:
    """One vLLM engine in this (child) process, pinned to `cores` (None: vLLM's own binding), as an actor's
    would be; after a warm-up, REPEATS rounds that start together with the other engines' (`barrier`), each
    putting (round, start, end, tokens) on `results`."""
    if "torch" in sys.modules:  # then OMP_NUM_THREADS comes too late: the engines share all cores unpinned
        raise RuntimeError("torch was imported before the raw engine's thread settings")
    set_engine_threads(cores)
    from rlpractice.rollout.samplers import engine_env

    os.environ.update(engine_env(cfg.sampler))
    from vllm import LLM

    llm = LLM(model=checkpoint, seed=0, **OmegaConf.to_container(cfg.sampler.engine, resolve=True))
    params = sampling_params(N, TOKENS, temperature=1.0, top_p=1.0, ignore_eos=ignore_eos, logprobs=logprobs)

    def run() -> int:
        return sum(len(c.token_ids) for out in llm.generate(prompts, params, use_tqdm=False) for c in out.outputs)

    try:
        run()
        for r in range(REPEATS):
            barrier.wait()
            start = time.perf_counter()
            tokens = run()
            results.put((r, start, time.perf_counter(), tokens))
        barrier.wait()
    finally:  # a separate engine process must not live on beside the actors'
        llm.llm_engine.engine_core.shutdown()


def raw_vllm(cfg, prompts, checkpoint, ignore_eos: bool, logprobs: bool, engines: int) -> tuple[float, int]:
    """(seconds, tokens) of the fastest round of `engines` raw engines, each in a spawned process of its own
    (an in-process engine pins its process's threads, which would slow the HF runs after it), the prompts
    shared out as `Samplers.sample` does; a round lasts from the first engine's start to the last one's end."""
    from rlpractice.rollout.samplers import plan_calls

    ctx = multiprocessing.get_context("spawn")
    calls = plan_calls(len(prompts), N, cfg.sampler.max_samples_per_request, cfg.sampler.samples_per_call, engines)
    shares = [[prompts[i] for i, _ in call] for call in calls]
    cpus = cfg.sampler.num_cpus_per_sampler
    cores = [engine_cores(sorted(os.sched_getaffinity(0)), slot, cpus) if engines > 1 else None
             for slot in range(len(shares))]
    barrier, results = ctx.Barrier(len(shares)), ctx.Queue()
    children = [ctx.Process(target=raw_engine, args=(cfg, share, checkpoint, ignore_eos, logprobs, c, barrier,
                                                                 results))
                for share, c in zip(shares, cores, strict=True)]
    for child in children:
        child.start()
    rows = [results.get() for _ in range(REPEATS * len(children))]
    for child in children:
        child.join()
    rounds = [[row for row in rows if row[0] == r] for r in range(REPEATS)]
    return min((max(x[2] for x in rnd) - min(x[1] for x in rnd), sum(x[3] for x in rnd)) for rnd in rounds)


def ray_actors(cfg, prompts, checkpoint, ignore_eos: bool, logprobs: bool) -> tuple[tuple[float, int], list[float]]:
    """(seconds, tokens) as `best_of`, and each engine's start-up seconds inside its actor."""
    from rlpractice.rollout.samplers import Samplers

    cfg.sampler.max_new_tokens = TOKENS
    samplers = Samplers(checkpoint, cfg.sampler, cfg.cluster, seed=0)
    started = [round(info.startup_s, 2) for info in samplers.info]
    try:
        return best_of(lambda: sum(len(s.ids) for _, chunk in samplers.sample(prompts, N, ignore_eos=ignore_eos,
                                                                                     logprobs=logprobs)
                                   for s in chunk.samples)), started
    finally:
        samplers.shutdown()


def hf_generate(prompts, checkpoint, ignore_eos: bool, dtype: str) -> dict[str, tuple[float, int]]:
    """Both layouts with the model in `dtype` (keys suffixed `_<dtype>` unless float32)."""
    import torch

    from rlpractice import model as policy

    model, tokenizer = policy.load(checkpoint)
    model.to(getattr(torch, dtype)).eval()
    kw = dict(do_sample=True, temperature=1.0, max_new_tokens=TOKENS, min_new_tokens=TOKENS if ignore_eos else 0,
              pad_token_id=tokenizer.pad_token_id)
    eos = tokenizer.eos_token_id

    def generated(out: torch.Tensor, prompt_len: int) -> int:
        """Tokens up to and including each row's first end-of-text (what vLLM would have returned)."""
        new = out[:, prompt_len:]
        ended = (new == eos).int()
        first = torch.where(ended.any(1), ended.argmax(1) + 1, torch.full_like(ended[:, 0], new.shape[1]))
        return int(first.sum())

    enc = [tokenizer(p, return_tensors="pt")["input_ids"] for p in prompts]
    tokenizer.padding_side = "left"
    batch = tokenizer([p for p in prompts for _ in range(N)], return_tensors="pt", padding=True)

    def per_prompt() -> int:
        with torch.no_grad():
            return sum(generated(model.generate(ids, num_return_sequences=N, **kw), ids.shape[1]) for ids in enc)

    def one_batch() -> int:
        with torch.no_grad():
            return generated(model.generate(**batch, **kw), batch["input_ids"].shape[1])

    suffix = "" if dtype == "float32" else f"_{dtype}"
    return {f"hf_generate_per_prompt{suffix}": best_of(per_prompt),
            f"hf_generate_one_batch{suffix}": best_of(one_batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="an HF checkpoint directory (default: a random model of --hidden ...)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--samplers", type=int, help="engines (sampler.num_samplers; default: the config's)")
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="completions end at end-of-text as in RL (use a trained --checkpoint); tokens/s then "
                             "counts the tokens each method returns")
    parser.add_argument("--logprobs", action="store_true",
                        help="the vLLM runs return each sampled token's log-prob (RL's steps with max_staleness > 0)")
    parser.add_argument("--separate-engine-process", action="store_true",
                        help="sampler.engine_in_process=false: each engine core in a process of its own (vLLM's "
                             "default)")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=VALUE",
                        help="a vLLM engine setting (sampler.engine.KEY) for the vLLM runs, e.g. block_size=128")
    args = parser.parse_args()
    cfg, prompts, checkpoint, params = setup(args.checkpoint, args)
    if args.samplers:
        cfg.sampler.num_samplers = args.samplers
    cfg.sampler.engine_in_process = not args.separate_engine_process
    cfg.sampler.engine = OmegaConf.merge(cfg.sampler.engine, OmegaConf.from_dotlist(args.engine))
    engines, forced, lp = cfg.sampler.num_samplers, not args.stop_at_eos, args.logprobs
    runs = {"raw_vllm_one_engine": raw_vllm(cfg, prompts, checkpoint, forced, lp, 1)}
    if engines > 1:
        runs["raw_vllm_same_engines"] = raw_vllm(cfg, prompts, checkpoint, forced, lp, engines)
    runs["rlpractice_ray_actors"], started = ray_actors(cfg, prompts, checkpoint, forced, lp)
    for dtype in dict.fromkeys(["float32", cfg.sampler.engine.dtype]):
        runs.update(hf_generate(prompts, checkpoint, forced, dtype))
    import torch  # not at the top: the raw engines' processes must set their threads before torch loads

    seconds = {k: v[0] for k, v in runs.items()}
    rate = {k: tokens / secs for k, (secs, tokens) in runs.items()}
    hf_best = max(v for k, v in rate.items() if k.startswith("hf_generate"))
    result = {
        **meta(),
        "setup": {"prompts": PROMPTS, "samples_per_prompt": N, "tokens_per_sample": TOKENS, "repeats": REPEATS,
                  "checkpoint": checkpoint, "params": params, "torch_threads": torch.get_num_threads(),
                  "engines": engines, "cpus_per_engine": cfg.sampler.num_cpus_per_sampler,
                  "engine_in_process": cfg.sampler.engine_in_process,
                  "engine": OmegaConf.to_container(cfg.sampler.engine, resolve=True),
                  "engine_env": OmegaConf.to_container(cfg.sampler.engine_env, resolve=True)},
        "actor_engine_start_s": started,  # vLLM's start inside each actor (torch.compile included when on)
        "completions_end_at_eos": not forced, "vllm_logprobs": lp, "seconds": seconds,
        "tokens": {k: v[1] for k, v in runs.items()}, "tokens_per_second": rate,
        # Ray's cost: the actors against the same engines without Ray
        "ratio_actors_vs_raw_vllm": rate["rlpractice_ray_actors"] / rate.get("raw_vllm_same_engines",
                                                                              rate["raw_vllm_one_engine"]),
        "ratio_actors_vs_one_raw_engine": rate["rlpractice_ray_actors"] / rate["raw_vllm_one_engine"],
        "ratio_actors_vs_hf_generate": rate["rlpractice_ray_actors"] / hf_best,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    name = "sampling" if args.checkpoint or (args.hidden, args.layers) == (128, 4) else \
        f"sampling_h{args.hidden}_l{args.layers}"
    name += ("" if args.samplers is None else f"_s{args.samplers}") + ("" if forced else "_eos") + \
        ("_lp" if lp else "") + ("_mp" if args.separate_engine_process else "") + ("_engine" if args.engine else "")
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":  # vLLM starts worker processes with spawn
    main()
