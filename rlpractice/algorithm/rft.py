"""Rejection-sampling fine-tuning (best-of-correct): which samples of a group to imitate."""

from __future__ import annotations


def rft_selection(rewards: list[float], lengths: list[int], keep: str) -> list[int]:
    """Indices of the samples to train on: every correct one (reward >= 1) with keep="all", or only the
    shortest correct one with keep="shortest". With rewards [1, 0, 1] and lengths [9, 3, 5]: all -> [0, 2],
    shortest -> [2]."""
    correct = [i for i, r in enumerate(rewards) if r >= 1.0]
    if keep == "shortest" and correct:
        return [min(correct, key=lambda i: lengths[i])]
    return correct
