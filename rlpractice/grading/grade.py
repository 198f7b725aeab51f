"""A verifier's verdict on one completion (its own module: the adapters of conventions.py and the registry both
build on it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grade:
    reward: float
    reason: str
    parts: dict[str, float] | None = None  # each verifier's reward, when several are combined
