"""Held-out evaluation: pass@1 and pass@k (unbiased estimator) with the run's verifier and sampling."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rlpractice.algorithm.pass_at_k import mean_pass_at_k
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.samplers import Samplers
from rlpractice.textbook.problems import Problem


def evaluate(samplers: Samplers, pool: GradingPool, problems: list[Problem], n: int, ks: list[int]) -> dict:
    texts: dict[int, list[str]] = defaultdict(list)
    lengths: list[int] = []
    for i, chunk in samplers.sample([p.prompt for p in problems], n):
        texts[i].extend(text for _, text, _ in chunk["completions"])
        lengths.extend(len(ids) for ids, _, _ in chunk["completions"])
    correct = []
    by_level: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(problems):
        grades = pool.grade(texts[i], [p.answer] * len(texts[i]), [p.columns] * len(texts[i]))
        c = sum(g.reward >= 1.0 for g in grades)
        correct.append(c)
        by_level[p.level].append(c)
    out = {f"pass@{k}": mean_pass_at_k(correct, n, k) for k in ks if k <= n}
    out.update({f"level{lv}/pass@1": mean_pass_at_k(cs, n, 1) for lv, cs in sorted(by_level.items())})
    out["completion_length"] = float(np.mean(lengths))
    out["num_problems"] = len(problems)
    out["samples_per_problem"] = n
    return out
