"""The reward model's objective, as pure functions of the scores of (chosen, rejected) pairs.

Bradley-Terry: a scorer r(x) says how good an answer is, and P(chosen beats rejected) = sigmoid(r_c - r_r).
Training maximises that probability over the pairs. Only differences of scores matter to it, so the scores
can drift as a whole; the centring term (Eisenstein et al. 2023, TRL's `center_rewards_coefficient`) keeps
them near zero, which RL, where the score is the reward, needs for a stable scale.

Shapes: 1-D tensors [pairs]; every function returns the mean over pairs, so a micro-batch's share of the
batch loss is its mean times (its pairs / the batch's pairs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor,
                       margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """mean(-log sigmoid(r_c - r_r - margin)): the negative log-likelihood of the preferences.
    `margin` (a number, or one per pair) asks chosen to win by at least that much (Llama 2's margin loss)."""
    return -F.logsigmoid(r_chosen - r_rejected - margin).mean()


def centering_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, coef: float) -> torch.Tensor:
    """coef * mean((r_c + r_r)^2): pulls each pair's scores to sum to zero (0.01 in TRL and in the paper)."""
    return coef * ((r_chosen + r_rejected) ** 2).mean()


def preference_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | float = 0.0,
                    center_coef: float = 0.0) -> torch.Tensor:
    """What the reward model minimises: Bradley-Terry plus the centring term."""
    loss = bradley_terry_loss(r_chosen, r_rejected, margin)
    if center_coef:
        loss = loss + centering_loss(r_chosen, r_rejected, center_coef)
    return loss


def pair_accuracy(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> float:
    """Fraction of pairs where chosen scores strictly higher (a tie is a miss: the model could not tell)."""
    return (r_chosen > r_rejected).float().mean().item()
