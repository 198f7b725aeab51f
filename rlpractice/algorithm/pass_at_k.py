"""Unbiased pass@k (Chen et al. 2021): with n samples of which c are correct,
pass@k = 1 - C(n-c, k) / C(n, k), computed as a stable product."""

from __future__ import annotations

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
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
