"""Group-relative advantages (GRPO): each sample is judged against its siblings for the same prompt.

Pure functions over tensors of shape [num_groups, group_size]; no model, no state.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """A_ij = (r_ij - mean_j r_ij) / (std_j r_ij + eps)   (GRPO; Dr. GRPO sets scale_by_std=False).

    std is the population std (divide by G): with rewards [1, 0, 0, 0] the correct sample gets
    (1 - 0.25) / 0.433 = 1.732. A group whose rewards are all equal gets 0 everywhere: no signal.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)


def zero_variance_fraction(rewards: torch.Tensor) -> float:
    """Fraction of groups whose rewards are all equal (they contribute no gradient)."""
    return (rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean().item()


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO: A_ij = r_ij - mean of the *other* G-1 rewards of the group = G/(G-1) * (r_ij - mean_j r_ij).

    With rewards [1, 0, 0, 0]: the correct sample gets 1 - 0 = 1, each wrong one 0 - 1/3 = -0.333.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [num_groups, group_size >= 2], got shape {tuple(rewards.shape)}")
    g = rewards.shape[1]
    return (rewards - rewards.mean(dim=1, keepdim=True)) * g / (g - 1)


ESTIMATORS = ("grpo", "rloo")  # the choices of algo.advantage in config_schema.AlgoConfig


def advantages(rewards: torch.Tensor, estimator: str, scale_by_std: bool) -> torch.Tensor:
    """The estimator `algo.advantage` names: grpo (group mean, optionally / std) or rloo (leave-one-out)."""
    if estimator == "grpo":
        return group_advantages(rewards, scale_by_std=scale_by_std)
    if estimator == "rloo":
        return rloo_advantages(rewards)
    raise ValueError(f"algo.advantage={estimator!r} is none of {ESTIMATORS}")  # the config schema allows only those
