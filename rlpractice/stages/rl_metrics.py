"""What an RL step reports: TRL's metric names where they exist (reward, reward_std, frac_reward_zero_std,
completions/mean_length, clip_ratio, kl, entropy), plus per-level and per-verifier pass rates."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np
import torch

from rlpractice.algorithm.advantages import zero_variance_fraction
from rlpractice.environments.metrics import episode_metrics
from rlpractice.grading.registry import is_failure
from rlpractice.rollout.batch import Batch, tool_metrics
from rlpractice.stages.practice import PracticeOrder


def step_metrics(batch: Batch, trained: torch.Tensor, learned: dict, times: dict[str, float], restarts: int) -> dict:
    """The step's metrics; `trained`: the rewards the update learned from (the verifier's, or a reward model's:
    reward/), `learned`: the update's own."""
    rewards, samples = batch.rewards(), batch.samples  # the verifier's
    return {
        "pass_rate": rewards.ge(1.0).float().mean().item(),
        "samples": rewards.numel(),
        "reward": trained.mean().item(),
        "reward_std": trained.std(dim=1, unbiased=False).mean().item(),
        "frac_reward_zero_std": zero_variance_fraction(trained),
        "completions/mean_length": float(np.mean([len(s.ids) for s in samples])),
        "completions/min_length": min(len(s.ids) for s in samples),
        "completions/max_length": max(len(s.ids) for s in samples),
        "completions/clipped_ratio": float(np.mean([s.finish == "length" for s in samples])),
        "verifier/failures": sum(is_failure(s.reason) for s in samples),
        "sampler/restarts": restarts,
        "dynamic_sampling/filtered_fraction": batch.filtered,
        **learned,
        "time/sample": batch.sample_s,  # generation (on the sampling thread when sampling ahead)
        "time/grade": batch.grade_s,
        **{f"time/{k}": v for k, v in times.items()},
        "memory/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # the trainer process
        **level_pass_rates(batch), **verifier_metrics(batch), **batch.curriculum, **tool_metrics(samples),
        **episode_metrics(samples),
    }


def level_pass_rates(batch: Batch) -> dict:
    """Pass rate of this step's groups per textbook difficulty level."""
    rewards, levels = batch.rewards(), [p.level for p in batch.problems]
    return {f"level{lv}/pass_rate": rewards[[i for i, x in enumerate(levels) if x == lv]].ge(1.0).float().mean().item()
            for lv in sorted(set(levels))}


def curriculum_metrics(order: PracticeOrder) -> dict:
    """How the curriculum's view of the practice set moves: how much of it has been tried, and how much
    of that looks solved (estimated pass rate > 0.9) or hopeless (< 0.1)."""
    estimates = [order.pass_estimate(p) for p in order.problems if p.question in order.stats]
    seen = max(len(estimates), 1)
    return {"curriculum/seen_fraction": len(estimates) / len(order.problems),
            "curriculum/solved_fraction": sum(e > 0.9 for e in estimates) / seen,
            "curriculum/hopeless_fraction": sum(e < 0.1 for e in estimates) / seen}


def verifier_metrics(batch: Batch) -> dict:
    """With several verifiers: each one's mean reward, and how often it applied (did not return None)."""
    samples = batch.samples
    names = sorted({n for s in samples if s.parts for n in s.parts})
    out = {}
    for n in names:
        applied = [s.parts[n] for s in samples if s.parts and n in s.parts]
        out[f"verifier/{n}/reward"] = float(np.mean(applied))
        out[f"verifier/{n}/applied"] = len(applied) / len(samples)
    return out


FAILURES_LOGGED = 8  # per step: enough to see why a verifier or an environment fails, not a flood


def log_rollouts(path: Path, step: int, batch: Batch, scores: list[float] | None, per_step: int) -> list[dict]:
    """A few sampled solutions per step with their reward and the verifier's (or environment's) reason, for
    reading, appended to `path`, and the first samples whose verifier or environment failed; `scores`: a reward
    model's score of every sample of the batch, in order (None: no reward model)."""
    chosen, failed, first = [], [], 0  # first: the index of each group's first sample in the batch
    for i, g in enumerate(batch.groups):
        if i < per_step:
            chosen.append((g, 0, first))
        failed += [(g, j, first + j) for j, s in enumerate(g.samples) if is_failure(s.reason) and (i >= per_step or j)]
        first += len(g.samples)
    rows = []
    for g, j, k in chosen + failed[:FAILURES_LOGGED]:
        p, s = g.problem, g.samples[j]
        rows.append({"step": step, "prompt": p.prompt, "question": p.question, "answer": p.answer,
                     "completion": s.text, "reward": s.reward, "reason": s.reason,
                     **({"parts": s.parts} if s.parts else {}),
                     **({"turns": s.turns, "turn_rewards": s.turn_rewards} if s.turn_rewards is not None else {}),
                     **({"rm_score": scores[k]} if scores is not None else {})})
    with open(path, "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return rows
