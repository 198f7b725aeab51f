"""The learner on N ranks (FSDP2, Ray actors) against one process, on the same RL batch in the same run: the step
time of each, N ranks' overhead, how far apart their weights are after the step, and what gathering the full
weights back to the trainer costs (what every weight sync and checkpoint pays at N > 1).

    .venv/bin/python scripts/bench_learner_ranks.py [--ranks 2] [--prompts 32] [--group 32] [--repeats 5]
        [--out FILE]

The batch has the default run's shape (prompts x samples per prompt, prompts ~80 tokens, completions 16-64) with
random tokens on the default model (bench_learner.py's "tiny"). One process computes with as many threads as the
ranks have together (one each), so on a CPU the comparison is the same cores split two ways: no speed-up is
expected, the figure is the cost of splitting. Steps alternate between the two learners, medians of --repeats after
one warm-up. Writes runs/bench/learner_ranks.json unless --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import ray
import torch
from bench_meta import build, meta  # scripts/ is on sys.path when a script runs
from omegaconf import OmegaConf

from rlpractice.algorithm.settings import LossSettings
from rlpractice.learner.device import place
from rlpractice.learner.forward import Sequence
from rlpractice.learner.local import LocalLearner
from rlpractice.learner.ranks import LearnerGroup

ROOT = Path(__file__).resolve().parents[1]


def rl_batch(vocab: int, prompts: int, group: int) -> list[Sequence]:
    g = torch.Generator().manual_seed(0)
    seqs = []
    for _ in range(prompts):
        prompt = torch.randint(3, vocab, (80,), generator=g).tolist()
        for j in range(group):
            n = int(torch.randint(16, 65, (1,), generator=g))
            seqs.append(Sequence(prompt + torch.randint(3, vocab, (n,), generator=g).tolist(), [0] * 80 + [1] * n,
                                 advantage=1.0 if j % 2 else -1.0))
    return seqs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "learner_ranks.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.ranks)
    model = build("tiny")
    place(model, "cpu")
    seqs = rl_batch(model.config.vocab_size, args.prompts, args.group)
    loss = LossSettings(token_budget=8192, grad_clip=1.0, eps_low=0.2, eps_high=0.28, aggregation="token_mean",
                        max_tokens=64)
    one = LocalLearner(copy.deepcopy(model))
    learner = OmegaConf.create({"num_workers": args.ranks, "num_cpus_per_worker": 1, "num_gpus_per_worker": 0,
                                "placement": "PACK", "device": "cpu"})
    cluster = OmegaConf.create({"address": None, "num_cpus": args.ranks, "object_store_mb": 256, "log_to_driver": True,
                                "temp_dir": None, "placement_timeout_s": 120, "vllm_log_level": "ERROR"})
    many = LearnerGroup(copy.deepcopy(model), learner, cluster)
    times: dict[str, list[float]] = {"one": [], "ranks": [], "gather": []}
    try:
        for learner_ in (one, many):
            learner_.start(lr=1e-6, weight_decay=0.0, betas=(0.9, 0.99))
        for repeat in range(args.repeats + 1):
            for name, learner_ in (("one", one), ("ranks", many)):
                t = time.perf_counter()
                learner_.policy_gradient_step(seqs, loss, pad_id=0, share_prompts=True)
                if repeat:
                    times[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            many.full_model()
            if repeat:
                times["gather"].append(time.perf_counter() - t)
            if repeat == 0:  # after one identical step from identical weights
                gap = max(float((a - b).abs().max()) for a, b in zip(one.full_model().parameters(),
                                                                     many.full_model().parameters(), strict=True))
    finally:
        many.close()
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {**meta(), "ranks": args.ranks, "sequences": len(seqs),
              "tokens": sum(len(s.ids) for s in seqs), "step_one_process_s": med["one"],
              "step_ranks_s": med["ranks"], "ratio_ranks_over_one": med["ranks"] / med["one"],
              "gather_full_weights_s": med["gather"], "max_weight_gap_after_one_step": gap, "times": times}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "times"}, indent=2))


if __name__ == "__main__":
    main()
