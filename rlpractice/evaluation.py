"""Held-out evaluation with the run's verifier and sampling settings: pass@k (the unbiased estimator of
Chen et al. 2021, k up to the samples per problem) and maj@n (majority vote over the n samples' final answers, as
the run's verifier reads them when it says how, else as the math extraction does)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from rlpractice.environments.metrics import attempts_solved, episode_metrics, solved
from rlpractice.environments.settings import EpisodeSettings
from rlpractice.grading.mathparse import extract_answer, plain_number
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.batch import Group, tool_metrics
from rlpractice.rollout.samplers import Samplers, sample_groups
from rlpractice.textbook.problems import Problem


def pass_at_k(n: int, c: int, k: int) -> float:
    """With n samples of which c are correct: 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(correct_counts: list[int], n: int, k: int) -> float:
    return float(np.mean([pass_at_k(n, c, k) for c in correct_counts])) if correct_counts else 0.0


def majority_correct(answers: list[str | None], correct: list[bool]) -> bool:
    """maj@n: is the most frequent final answer among n samples a correct one?

    `answers` are normalised final answers (None = no answer, never voted for); ties go to the answer
    seen first. With answers [7, 5, 7, None] and correct [T, F, T, F] the vote picks 7: True.
    """
    counts: dict[str, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return False
    winner = max(counts, key=lambda a: counts[a])  # max keeps the first of equal counts
    return any(ok for a, ok in zip(answers, correct, strict=True) if a == winner)


def answer_key(text: str) -> str | None:
    """The final answer, normalised for voting: exact value for plain numbers ('0.5' and '1/2' agree)."""
    answer = extract_answer(text)
    if answer is None:
        return None
    value = plain_number(answer)
    return str(value) if value is not None else answer.replace(" ", "")


def evaluate(samplers: Samplers, pool: GradingPool, problems: list[Problem], n: int, ks: list[int],
             episodes: EpisodeSettings | None = None, proxy: Callable[[list[Group]], float] | None = None) -> dict:
    """pass@k for each k in `ks`, maj@n, pass@1 per level and the mean completion length, from n samples per
    problem drawn and graded exactly as in RL (rollout/batch.py), through the same episode loop when `episodes` (the
    run's tools or environment) is set; with `proxy` (a reward model's mean score), `rlhf/proxy` beside them."""
    groups, _ = sample_groups(samplers, pool, problems, n, logprobs=False, episodes=episodes)
    correct = [sum(r >= 1.0 for r in g.rewards) for g in groups]
    key = pool.answer or answer_key  # the verifier's own reading of the final answer, when it gives one
    majority = [majority_correct([key(s.text) for s in g.samples], [r >= 1.0 for r in g.rewards]) for g in groups]
    by_level: dict[int, list[int]] = defaultdict(list)
    for g, c in zip(groups, correct, strict=True):
        by_level[g.problem.level].append(c)
    out = {f"pass@{k}": mean_pass_at_k(correct, n, k) for k in ks if k <= n}
    out[f"maj@{n}"] = float(np.mean(majority))
    out.update({f"level{lv}/pass@1": mean_pass_at_k(cs, n, 1) for lv, cs in sorted(by_level.items())})
    out["completion_length"] = float(np.mean([len(s.ids) for g in groups for s in g.samples]))
    out.update(tool_metrics([s for g in groups for s in g.samples]))
    out.update(retry_metrics(groups, n, ks))
    if proxy is not None:
        out["rlhf/proxy"] = proxy(groups)
    out["num_problems"] = len(problems)
    out["samples_per_problem"] = n
    return out


def retry_metrics(groups: list[Group], n: int, ks: list[int]) -> dict:
    """For episodes with an environment's per-turn rewards: the episode metrics, first-attempt pass@1, success
    within k attempts, and, to compare, pass@k of k independent samples: the episodes' first attempts are n
    independent samples per problem, so retrying is measured against sampling again on the same draws."""
    samples = [s for g in groups for s in g.samples]
    if not samples or any(s.turn_rewards is None for s in samples):
        return {}
    first = [sum(bool(s.turn_rewards) and solved(s.turn_rewards[0]) for s in g.samples) for g in groups]
    attempts = max(len(s.turn_rewards) for s in samples)
    out = episode_metrics(samples)
    out["first_attempt_pass@1"] = mean_pass_at_k(first, n, 1)
    for k in sorted({*range(2, attempts + 1), *ks}):
        if 2 <= k <= attempts:  # within 1 attempt is first_attempt_pass@1
            out[f"success_within_{k}_attempts"] = float(np.mean([attempts_solved(s, k) for s in samples]))
        if k <= n:
            out[f"independent_pass@{k}"] = mean_pass_at_k(first, n, k)
    return out
