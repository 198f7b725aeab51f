"""The policy-gradient loss settings as one value: what `algo=` chooses, read once from the config."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass(frozen=True)
class LossSettings:
    eps_low: float = 0.2  # clip range of the importance ratio below 1 ...
    eps_high: float = 0.2  # ... and above 1 (DAPO's clip-higher makes this larger)
    aggregation: str = "seq_mean_token_mean"  # token_mean (DAPO), seq_mean_token_sum_norm (Dr. GRPO)
    ratio_level: str = "token"  # token (PPO/GRPO) or sequence (GSPO)
    kl_coef: float = 0.0  # weight of the per-token KL to the frozen reference policy
    kl_estimator: str = "k3"  # k1 (log-ratio) or k3 (always >= 0)
    entropy_coef: float = 0.0  # weight of the entropy bonus
    grad_clip: float = 1.0  # max gradient norm per optimiser step
    token_budget: int = 8192  # padded tokens per micro-batch (bounds memory, not the update)
    max_tokens: int = 64  # the constant length normaliser of seq_mean_token_sum_norm (max_new_tokens)
    sampler_is_cap: float = 0.0  # > 0: truncated importance sampling on learner/engine ratios, capped here; 0: off

    @classmethod
    def from_config(cls, algo: DictConfig, max_new_tokens: int) -> LossSettings:
        return cls(eps_low=algo.epsilon_low, eps_high=algo.epsilon_high, aggregation=algo.loss_aggregation,
                   ratio_level=algo.ratio_level, kl_coef=algo.kl_coef, kl_estimator=algo.kl_estimator,
                   entropy_coef=algo.entropy_coef, grad_clip=algo.grad_clip, token_budget=algo.token_budget,
                   max_tokens=max_new_tokens, sampler_is_cap=algo.sampler_is_cap if algo.sampler_is is True else 0.0)

    @property
    def needs_every_sample(self) -> bool:
        """A zero-advantage sample adds nothing to the policy-gradient term; only a KL or entropy term makes
        it count, so otherwise the learner may skip it (same update, less compute)."""
        return self.kl_coef > 0 or self.entropy_coef > 0
