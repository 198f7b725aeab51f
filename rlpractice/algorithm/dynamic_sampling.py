"""DAPO's dynamic sampling: a group whose samples all got the same reward has zero advantage everywhere,
so it teaches nothing; the batch is refilled with groups that do (rollout/batch.py draws the refills)."""

from __future__ import annotations


def informative(rewards: list[float]) -> bool:
    """Whether a group's rewards differ (some samples did better than others): [1, 0, 0] yes, [1, 1] no."""
    return max(rewards) != min(rewards)


def filtered_fraction(kept: int, seen: int) -> float:
    """Share of the sampled groups dropped as uninformative (0 when nothing was sampled)."""
    return 1.0 - kept / seen if seen else 0.0
