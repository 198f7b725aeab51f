"""The clipped policy-gradient objective, as pure per-token functions.

Shapes: per-token tensors are [batch, seq] with a 0/1 `mask` marking completion tokens.
The learner feeds micro-batches; normalisers are passed in so gradient accumulation over
micro-batches gives exactly the loss of the whole batch.
"""

from __future__ import annotations

import torch


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                      eps_low: float, eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO/GRPO loss  -min(r A, clip(r, 1-eps_low, 1+eps_high) A)  with r = exp(logp - old_logp).

    `advantages` is per sequence [batch] (broadcast over tokens). Returns (loss, clipped) where
    `clipped` marks tokens whose clipped term was the active (smaller) one.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    return loss, (clipped < unclipped)


def sequence_level_logp(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO: replace each token's log-ratio by its sequence's mean log-ratio (length-normalised).

    Returns `old_logp + mean_t(logp - old_logp)` broadcast over the sequence's tokens, so that
    `clipped_surrogate` on it clips and weights whole sequences; gradients flow through the mean.
    """
    mean_log_ratio = ((logp - old_logp) * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
    return old_logp + mean_log_ratio


AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")  # algo.loss_aggregation's choices


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, num_sequences: int,
              num_tokens: int, max_tokens: int) -> torch.Tensor:
    """Reduce per-token losses of one micro-batch into its share of the batch loss.

      seq_mean_token_mean: mean over each sequence's tokens, then mean over sequences (GRPO paper)
      token_mean:          sum over all tokens / all tokens in the batch (DAPO)
      seq_mean_token_sum_norm: sum over tokens / max_tokens, mean over sequences (Dr. GRPO)

    `num_sequences` / `num_tokens` are counts over the *whole* batch, not this micro-batch.
    """
    masked = per_token * mask
    if mode == "seq_mean_token_mean":
        per_seq = masked.sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / num_sequences
    if mode == "token_mean":
        return masked.sum() / max(num_tokens, 1)
    if mode == "seq_mean_token_sum_norm":
        return masked.sum() / (max_tokens * num_sequences)
    raise ValueError(f"algo.loss_aggregation={mode!r} is none of {AGGREGATIONS}")  # the config schema allows only those


def truncated_is_weights(learner_logp: torch.Tensor, sampler_logp: torch.Tensor,
                         cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token truncated importance weights  min(exp(learner_logp - sampler_logp), cap)  and the mask of tokens
    at the cap. The engines sampled the tokens; when they compute in another precision than the learner, their
    distribution differs slightly from the policy being trained, and weighting each token's loss by this ratio
    makes the update the learner's on-policy one again (truncated, so a rare large ratio cannot dominate).
    No gradient flows through the weights. Equal log-probs give weight 1 exactly: a no-op."""
    ratio = torch.exp((learner_logp - sampler_logp).detach())
    return ratio.clamp(max=cap), ratio > cap


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate of KL(policy || reference): logp - ref (unbiased, can be negative)."""
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1 >= 0."""
    diff = ref_logp - logp
    return torch.exp(diff) - diff - 1.0
