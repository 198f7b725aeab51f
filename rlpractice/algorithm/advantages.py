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


def _choose_ratio(n: torch.Tensor, total: int, k: int) -> torch.Tensor:
    """C(n, k) / C(total, k) = prod_{i<k} (n - i) / (total - i), elementwise over n (0 when n < k).

    The product of ratios, not two binomials: C(32, 8) is ~1e7, and the ratio is what the estimator needs."""
    out = torch.ones_like(n)
    for i in range(k):
        out = out * (n - i).clamp(min=0) / (total - i)
    return out


def passk_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Pass@k advantages for 0/1 rewards (Chen et al. 2025, "Pass@k Training", analytic form): the policy is
    rewarded for the group's chance that *some* answer of k is right, not for each answer being right.

    With N samples, c correct: R = 1 - C(N-c, k) / C(N, k) (the unbiased pass@k of the group), std = sqrt(R(1-R));
    a correct sample gets (1 - R) / std, a wrong one (1 - R - C(N-c-1, k-1) / C(N-1, k-1)) / std. The group's
    mean advantage is 0, as with GRPO. k=1 is GRPO (population std). By hand, N=4, c=1, k=2: R = 1 - 3/6 = 0.5,
    std = 0.5, correct (0.5)/0.5 = 1, wrong (0.5 - 2/3)/0.5 = -1/3: wrong answers are pushed down less than by
    GRPO (-0.577; the group already passes half the time), so the policy keeps trying other answers; once
    c > N - k every k-subset holds a right answer and the group gets 0: no more push towards pass@1 there.
    `scale_by_std` does not apply: the division by std is part of the estimator.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_groups, group_size], got shape {tuple(rewards.shape)}")
    n = rewards.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"algo.passk_k={k} must be between 1 and the group size rl.samples_per_prompt={n}")
    if not ((rewards == 0) | (rewards == 1)).all():
        # pass@k counts right answers; a weighted or reward-model score has no "right" to count
        bad = rewards[(rewards != 0) & (rewards != 1)][0].item()
        raise ValueError(f"algo.advantage=passk needs 0/1 rewards (pass@k counts right answers); got {bad}")
    r = rewards.double()  # the products of ratios lose digits in float32 for large groups
    wrong = n - r.sum(dim=1, keepdim=True)
    miss = _choose_ratio(wrong, n, k)  # 1 - R, kept as is: 1 - (1 - x) would lose x's digits when R is near 1
    std = (miss * (1 - miss)).sqrt()
    # a wrong answer's share: of the k-subsets holding it, the fraction with no right answer in them
    wrong_share = _choose_ratio(wrong - 1, n - 1, k - 1)
    adv = torch.where(r == 1, miss, miss - wrong_share)
    # std = 0 (R is 0 or 1) comes with adv = 0 for every sample there: no signal, as in an all-equal GRPO group
    return torch.where(std > 0, adv / std, 0.0).to(rewards.dtype)


ESTIMATORS = ("grpo", "rloo", "passk")  # the choices of algo.advantage in config_schema.AlgoConfig


def advantages(rewards: torch.Tensor, estimator: str, scale_by_std: bool, k: int = 8) -> torch.Tensor:
    """The estimator `algo.advantage` names: grpo (group mean, optionally / std), rloo (leave-one-out) or
    passk (pass@k with k = algo.passk_k)."""
    if estimator == "grpo":
        return group_advantages(rewards, scale_by_std=scale_by_std)
    if estimator == "rloo":
        return rloo_advantages(rewards)
    if estimator == "passk":
        return passk_advantages(rewards, k)
    raise ValueError(f"algo.advantage={estimator!r} is none of {ESTIMATORS}")  # the config schema allows only those


def turn_returns(turn_rewards: list[float | None], discount: float) -> list[float]:
    """G_t = sum over t' >= t of discount**(t' - t) * r_t' for each turn of one episode (a missing reward counts 0).
    G_0 is the episode's reward. With [0, 1] and discount 0.5: [0.5, 1.0]."""
    out, running = [], 0.0
    for r in reversed(turn_rewards):
        running = (r or 0.0) + discount * running
        out.append(running)
    return out[::-1]


def later_turn_advantages(turn_rewards: list[list[float | None]], discount: float, scale_by_std: bool = True,
                          eps: float = 1e-6) -> list[list[float]]:
    """Per-turn credit in one group of episodes: for each episode, the advantage of each of its turns after the
    first. Turn t's return G_t (`turn_returns`) is judged against the same turn of the group's other episodes
    that reached it: (G_t - their mean) / (their population std + eps), 0 when only one reached it. So a corrected
    second attempt gains credit of its own, and the first attempt keeps the episode's advantage. By hand, episodes
    [[0, 1], [0, 0], [1]]: turn 1 reached by the first two, G_1 = 1 and 0, mean 0.5, std 0.5: [[1.0], [-1.0], []]."""
    returns = [turn_returns(rs, discount) for rs in turn_rewards]
    out: list[list[float]] = [[] for _ in returns]
    for t in range(1, max((len(g) for g in returns), default=0)):
        reached = [i for i, g in enumerate(returns) if len(g) > t]
        values = torch.tensor([returns[i][t] for i in reached], dtype=torch.float32)
        centred = values - values.mean() if len(reached) > 1 else torch.zeros_like(values)
        if scale_by_std and len(reached) > 1:
            centred = centred / (values.std(unbiased=False) + eps)
        for i, a in zip(reached, centred.tolist(), strict=True):
            out[i].append(a)
    return out
