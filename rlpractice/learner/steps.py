"""The learner's steps on a list of sequences: next-token cross-entropy (pretrain, SFT, RFT), log-probs without
learning, and the clipped policy gradient (RL). Each runs token-budget micro-batches (microbatch.py) and, with
several ranks, as many forwards as every other rank."""

from __future__ import annotations

import functools
from collections import Counter

import torch

from rlpractice.algorithm import losses
from rlpractice.algorithm.settings import LossSettings
from rlpractice.errors import UserError
from rlpractice.learner.forward import PromptKV, Sequence, collate, shared_prompt_logprobs, step_prompts, token_logprobs
from rlpractice.learner.microbatch import even_out, microbatches, sequence_batches


def memory_hint(step):
    """Turn an out-of-GPU-memory error inside a learner step into one line that says which knobs bound it."""
    @functools.wraps(step)
    def wrapped(*args, **kwargs):
        try:
            return step(*args, **kwargs)
        except torch.OutOfMemoryError as e:
            raise UserError(f"the learner ran out of GPU memory in {step.__name__}: lower the padded tokens per "
                            "micro-batch (algo.token_budget in RL, pretrain.token_budget, sft.token_budget; a 0.5B "
                            "model with a 152k vocabulary fits 8192 on an 80 GB GPU, not 16384); the run resumes "
                            "from its last checkpoint with resume=true") from e
    return wrapped


@memory_hint
def lm_step(model, optimizer, seqs: list[Sequence], pad_id: int, token_budget: int, grad_clip: float,
            bf16: bool = False, total_targets: int | None = None) -> float:
    """One optimiser step of masked next-token cross-entropy (mean over all target tokens); `bf16`: the
    forward in bf16 autocast (`device.use_bf16`). `total_targets`: the whole batch's target tokens when `seqs` is
    one learner rank's share of it (None: `seqs` is the whole batch)."""
    model.train()
    device = model.device
    total_targets = target_tokens(seqs) if total_targets is None else total_targets
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for idx in even_out(microbatches([len(s.ids) for s in seqs], token_budget), device):
        if not idx:
            idle_pass(model, pad_id, share_prompts=False, backward=True)
            continue
        ids, attn, target = collate([seqs[i] for i in idx], pad_id, device)
        nll = -(token_logprobs(model, ids, attn, bf16=bf16) * target).sum() / max(total_targets, 1)
        nll.backward()
        loss_sum += nll.item()
    clip_grad_norm(model, grad_clip)
    optimizer.step()
    return loss_sum


@memory_hint
@torch.no_grad()
def sequence_logprobs(model, seqs: list[Sequence], pad_id: int, token_budget: int,
                      share_prompts: bool = False, bf16: bool = False) -> list[torch.Tensor]:
    """Per-sequence tensors of target-token log-probs (e.g. the sampling policy's, before updating)."""
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(seqs)
    batches = sequence_batches(seqs, token_budget, share_prompts)
    prompts = step_prompts(model, seqs, pad_id, model.device, token_budget, len(batches), bf16) if share_prompts \
        else None
    for idx in even_out(batches, model.device):
        if not idx:
            idle_pass(model, pad_id, share_prompts, backward=False)
            continue
        lp = _forward(model, [seqs[i] for i in idx], pad_id, share_prompts, bf16=bf16, prompts=prompts)[0].cpu()
        for row, i in enumerate(idx):
            out[i] = lp[row, : len(seqs[i].ids) - 1]
    return out  # type: ignore[return-value]


@memory_hint
def policy_gradient_step(model, optimizer, seqs: list[Sequence], loss: LossSettings, *, pad_id: int,
                         totals: tuple[int, int] | None = None, share_prompts: bool = False,
                         bf16: bool = False) -> dict:
    """One optimiser step of the clipped surrogate over `seqs`, with the objective `loss` describes. A sequence
    carries its `old_logps` (the sampling policy's; None: the samples are fresh, the ratio is 1 at the start) and,
    with `loss.kl_coef`, its `ref_logps` (a frozen reference policy's).

    `totals`: the whole batch's (sequences, target tokens), when `seqs` leaves some out (their advantage is 0: they
    add nothing to the gradient) or is one rank's share: the loss is normalised by the whole batch, so leaving
    sequences out changes speed, not the update. `share_prompts` computes each distinct prompt once per step or
    micro-batch (`shared_prompt_logprobs`); `bf16` runs the forward in bf16 autocast.
    """
    totals = totals or (len(seqs), target_tokens(seqs))
    model.train()
    optimizer.zero_grad(set_to_none=True)
    sums: Counter[str] = Counter()
    batches = sequence_batches(seqs, loss.token_budget, share_prompts)
    prompts = step_prompts(model, seqs, pad_id, model.device, loss.token_budget, len(batches), bf16) \
        if share_prompts else None
    for idx in even_out(batches, model.device):
        if not idx:
            idle_pass(model, pad_id, share_prompts, backward=True)
            continue
        batch = [seqs[i] for i in idx]
        logp_entropy, target = _forward(model, batch, pad_id, share_prompts, True, loss.entropy_coef > 0, bf16,
                                        prompts)
        micro_loss = _surrogate(batch, logp_entropy, target, loss, totals, sums)
        micro_loss.backward()
        sums["loss"] += micro_loss.item()
    if prompts is not None:
        prompts.backward()
    grad_norm = clip_grad_norm(model, loss.grad_clip)
    optimizer.step()
    return _step_metrics(sums, grad_norm, loss)


def _surrogate(batch: list[Sequence], logp_entropy, target: torch.Tensor, loss: LossSettings,
               totals: tuple[int, int], sums: Counter) -> torch.Tensor:
    """One micro-batch's share of the step's loss: the clipped surrogate, reweighted to the learner's policy where
    the engines' precision differs (`loss.sampler_is_cap`), plus the KL and entropy terms; its metrics into `sums`."""
    logp, entropy = logp_entropy
    old = logp.detach() if batch[0].old_logps is None else _padded([s.old_logps for s in batch], logp)
    adv = torch.tensor([s.advantage for s in batch], dtype=torch.float32, device=logp.device)
    ratio_logp = losses.sequence_level_logp(logp, old, target) if loss.ratio_level == "sequence" else logp
    per_token, was_clipped = losses.clipped_surrogate(ratio_logp, old, adv, loss.eps_low, loss.eps_high)
    sampler, sampled = _sampler_logps(batch, logp)
    if loss.sampler_is_cap and sampled.any():  # the engines' precision differs: reweight to the learner's policy
        weight, truncated = losses.truncated_is_weights(old, torch.where(sampled, sampler, old), loss.sampler_is_cap)
        per_token = per_token * weight
        sums["is"] += (weight * sampled).sum().item()
        sums["is_truncated"] += (truncated & sampled).sum().item()
    if loss.kl_coef > 0:
        kl_fn = losses.kl_k1 if loss.kl_estimator == "k1" else losses.kl_k3
        kl = kl_fn(logp, _padded([s.ref_logps for s in batch], logp))
        per_token = per_token + loss.kl_coef * kl
        sums["kl"] += (kl.detach() * target).sum().item()
    if loss.entropy_coef > 0:
        per_token = per_token - loss.entropy_coef * entropy
    sums["clipped"] += (was_clipped.float() * target).sum().item()
    sums["counted"] += target.sum().item()
    sums["entropy"] += (entropy.detach() * target).sum().item()
    # train/inference mismatch: learner vs engine log-prob of the same sampled token
    sums["mismatch"] += ((logp.detach() - sampler).abs() * sampled).sum().item()
    sums["sampled"] += int(sampled.sum().item())
    return losses.aggregate(per_token, target, loss.aggregation, *totals, loss.max_tokens)


def _step_metrics(sums: Counter, grad_norm: float, loss: LossSettings) -> dict:
    counted, sampled = max(sums["counted"], 1.0), sums["sampled"]
    out = {"loss": sums["loss"], "clip_ratio": sums["clipped"] / counted, "grad_norm": grad_norm,
           "entropy": sums["entropy"] / counted}
    if loss.kl_coef > 0:
        out["kl"] = sums["kl"] / counted
    if sampled:
        out["logprob_mismatch"] = sums["mismatch"] / sampled  # mean |log p_learner - log p_sampler| per token
        if loss.sampler_is_cap:
            out["sampler_is/ratio_mean"] = sums["is"] / sampled
            out["sampler_is/truncated_frac"] = sums["is_truncated"] / sampled
    return out


def _forward(model, batch: list[Sequence], pad_id: int, share_prompts: bool, with_entropy: bool = False,
             entropy_grad: bool = False, bf16: bool = False, prompts: PromptKV | None = None):
    """(log-probs[, entropy], target mask) of one micro-batch, by either path (same values)."""
    ids, attn, target = collate(batch, pad_id, model.device)
    if share_prompts:
        return shared_prompt_logprobs(model, batch, pad_id, model.device, with_entropy, entropy_grad, bf16,
                                      prompts), target
    return token_logprobs(model, ids, attn, with_entropy, entropy_grad, bf16), target


def _sampler_logps(batch: list[Sequence], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The engines' log-probs of a micro-batch's sampled tokens in the learner's layout (position t predicts token
    t+1; 0 elsewhere), and the mask of the positions that have one (sampled completion tokens; not the prompt, not
    tools' output ids)."""
    values = torch.zeros_like(like, requires_grad=False)
    mask = torch.zeros(like.shape, dtype=torch.bool, device=like.device)
    for row, s in enumerate(batch):
        if s.sampler_logps:
            n, end = len(s.sampler_logps), len(s.ids) - 1
            values[row, end - n : end] = torch.tensor(s.sampler_logps, dtype=values.dtype)
            mask[row, end - n : end] = torch.tensor(s.loss_mask[len(s.ids) - n :], dtype=torch.bool)
    return values, mask


def idle_pass(model, pad_id: int, share_prompts: bool, backward: bool) -> None:
    """A rank with no micro-batch left still takes part in the others' forward (and backward): on a two-token
    sequence, with a loss of zero, so it adds nothing to the gradient."""
    logp = _forward(model, [Sequence([pad_id, pad_id], [0, 1])], pad_id, share_prompts)[0]
    if backward:
        (logp.sum() * 0).backward()


def clip_grad_norm(model, max_norm: float) -> float:
    """Clip the gradient's global norm to `max_norm`; returns the norm before clipping. Sharded (FSDP2) gradients
    are DTensors: their norm is taken across all ranks, and read back as a plain number."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def target_tokens(seqs: list[Sequence]) -> int:
    """Tokens the loss is taken over (each sequence's targets after its first token)."""
    return sum(sum(s.loss_mask[1:]) for s in seqs)


def _padded(per_sequence: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Per-sequence log-prob tensors of a micro-batch, right-padded with 0 to `like`'s shape."""
    out = torch.zeros_like(like, requires_grad=False)
    for row, values in enumerate(per_sequence):
        out[row, : values.numel()] = values.to(like.device)
    return out
