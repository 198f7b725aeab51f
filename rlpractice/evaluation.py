"""Held-out evaluation with the run's verifier and sampling settings: pass@k (unbiased estimator, k up to
the samples per problem) and maj@n (majority vote over the n samples' final answers)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rlpractice.algorithm.pass_at_k import majority_correct, mean_pass_at_k
from rlpractice.grading.mathparse import extract_answer, plain_number
from rlpractice.grading.pool import GradingPool
from rlpractice.rollout.samplers import Samplers
from rlpractice.textbook.problems import Problem


def answer_key(text: str) -> str | None:
    """The final answer, normalised for voting: exact value for plain numbers ('0.5' and '1/2' agree)."""
    answer = extract_answer(text)
    if answer is None:
        return None
    value = plain_number(answer)
    return str(value) if value is not None else answer.replace(" ", "")


def evaluate(samplers: Samplers, pool: GradingPool, problems: list[Problem], n: int, ks: list[int]) -> dict:
    texts: dict[int, list[str]] = defaultdict(list)
    lengths: list[int] = []
    for i, chunk in samplers.sample([p.prompt for p in problems], n, logprobs=False):
        texts[i].extend(c[1] for c in chunk["completions"])
        lengths.extend(len(c[0]) for c in chunk["completions"])
    correct, majority = [], []
    by_level: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(problems):
        grades = pool.grade(texts[i], [p.answer] * len(texts[i]), [p.columns] * len(texts[i]))
        oks = [g.reward >= 1.0 for g in grades]
        correct.append(sum(oks))
        majority.append(majority_correct([answer_key(t) for t in texts[i]], oks))
        by_level[p.level].append(sum(oks))
    out = {f"pass@{k}": mean_pass_at_k(correct, n, k) for k in ks if k <= n}
    out[f"maj@{n}"] = float(np.mean(majority))
    out.update({f"level{lv}/pass@1": mean_pass_at_k(cs, n, 1) for lv, cs in sorted(by_level.items())})
    out["completion_length"] = float(np.mean(lengths))
    out["num_problems"] = len(problems)
    out["samples_per_problem"] = n
    return out
