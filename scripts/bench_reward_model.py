"""The reward model on the built-in preference pairs: held-out pair accuracy (overall and per kind of rejected
solution) and scoring throughput.

    .venv/bin/python scripts/bench_reward_model.py [--pretrain-steps 200] [--sft-steps 100] [--rm-steps 200]
        [--sft PATH] [--threads N] [--out FILE] [key=value ...]

A tiny model is pretrained and SFT'd on the math textbook by rlpractice's own stages (default model, fewer
steps than the default run; or --sft names an SFT checkpoint folder to start from instead), then the rm stage
trains on conf/rm/default.yaml's built-in pairs (key=value overrides its settings, e.g. lr=1e-3). Held-out
pairs are on the textbook's held-out questions. Throughput: `score_ids` on 1,024 sequences of 64 tokens (real
prompt + solution text, cut to 64) and `score` on 1,024 real (prompt, completion) texts, in micro-batches of
rm.token_budget padded tokens, after one warm-up. Writes runs/bench/reward_model.json unless --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_meta import meta  # scripts/ is on sys.path when a script runs
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from transformers.utils import logging as hf_logging

import rlpractice.config_schema  # noqa: F401 - registers the schema conf/ names, before composing
from rlpractice import model as policy
from rlpractice.reward.model import score, score_ids, sequence_ids
from rlpractice.stages.pretrain import run_pretrain
from rlpractice.stages.reward_model import run_rm
from rlpractice.stages.sft import run_sft
from rlpractice.textbook.math_textbook import build_textbook
from rlpractice.textbook.preferences import load_pairs
from rlpractice.tracking import Tracker

ROOT = Path(__file__).resolve().parents[1]
SAMPLES, SAMPLE_TOKENS = 1024, 64


def config(args):
    overrides = ["+experiment=math", f"pretrain.steps={args.pretrain_steps}", f"sft.steps={args.sft_steps}",
                 f"textbook.exposition_paragraphs={args.paragraphs}", "pretrain.checkpoint_every=0",
                 "sft.checkpoint_every=0", "learner.device=cpu", f"rm.steps={args.rm_steps}",
                 *(f"rm.{kv}" for kv in args.rm_settings)]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--sft-steps", type=int, default=100)
    parser.add_argument("--paragraphs", type=int, default=20000, help="textbook.exposition_paragraphs")
    parser.add_argument("--rm-steps", type=int, default=200)
    parser.add_argument("--sft", type=Path, default=None, help="start from this SFT checkpoint folder")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 is much faster when other processes load the cores")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "reward_model.json")
    parser.add_argument("rm_settings", nargs="*", help="rm settings, key=value")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    hf_logging.disable_progress_bar()
    cfg = config(args)
    run_dir = args.out.with_suffix("")  # runs/bench/reward_model/: its checkpoints and metrics
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    tracker = Tracker(cfg, run_dir)
    seconds = {}
    start = args.sft
    if start is None:
        t = time.time()
        tb = cfg.textbook
        book = build_textbook(cfg.seed, tb.exposition_paragraphs, tb.worked, 0, 0, tuple(tb.levels), tb.answer_only)
        model, tokenizer = run_pretrain(cfg, book.exposition, tracker)
        seconds["pretrain"] = time.time() - t
        t = time.time()
        model = run_sft(cfg, model, tokenizer, book.worked, tracker)
        start = policy.save(model, tokenizer, run_dir / "sft")
        seconds["sft"] = time.time() - t
    t = time.time()
    train, heldout = load_pairs(cfg.rm, cfg.seed)
    model, tokenizer, final = run_rm(cfg, start, train, heldout, tracker)
    seconds["rm"] = time.time() - t
    policy.save(model, tokenizer, run_dir / "rm")
    tracker.finish({f"rm_heldout_{k}": v for k, v in final.items()})

    # throughput: what RL asks for once per step (all samples at once)
    texts = [(p.prompt, c) for p in heldout + train for c in (p.chosen, p.rejected)][:SAMPLES]
    cut = [sequence_ids(tokenizer, p, c)[:SAMPLE_TOKENS] for p, c in texts]
    cut = [(s * (SAMPLE_TOKENS // len(s) + 1))[:SAMPLE_TOKENS] for s in cut]  # every one exactly 64 tokens
    budget = cfg.rm.token_budget
    ids_s = timed(lambda: score_ids(model, cut, budget))
    text_s = timed(lambda: score(model, tokenizer, [p for p, _ in texts], [c for _, c in texts], budget))
    text_tokens = statistics.mean(len(sequence_ids(tokenizer, p, c)) for p, c in texts)

    result = {
        **meta(),
        "settings": {"pretrain_steps": None if args.sft else args.pretrain_steps,
                     "sft_steps": None if args.sft else args.sft_steps, "sft_checkpoint": str(args.sft or ""),
                     "model": OmegaConf.to_container(cfg.model), "rm": OmegaConf.to_container(cfg.rm),
                     "train_pairs": len(train), "heldout_pairs": len(heldout)},
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]},  # other processes on the cores
        "heldout": final,
        "target_heldout_accuracy": 0.85,
        "throughput": {
            "samples": SAMPLES, "batch_tokens": budget,
            "score_ids_64_tokens": {"seconds": ids_s, "samples_per_s": SAMPLES / ids_s},
            "score_texts": {"mean_tokens": text_tokens, "seconds": text_s, "samples_per_s": SAMPLES / text_s},
        },
        "seconds": seconds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"heldout": final, "throughput": result["throughput"], "seconds": seconds}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
