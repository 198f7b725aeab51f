"""The torch learner: token log-probs, token-budget micro-batches, and the two update rules
(next-token cross-entropy for pretrain/SFT, clipped policy gradient for RL).

A *sequence* here is (token_ids, loss_mask): loss_mask[i] = 1 when token i is a target to learn
(every token in pretraining, solution tokens in SFT, completion tokens in RL).

In RL a group's samples all continue the same prompt. With `share_prompts` the learner runs each
distinct prompt through the model once per micro-batch and lets its samples' completions attend to
that prompt's keys and values (the KV cache, differentiable), instead of recomputing the prompt for
every sample: the same log-probs and gradients for about half the tokens here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import DynamicCache

from rlpractice.algorithm.losses import aggregate, clipped_surrogate, kl_k1, kl_k3, sequence_level_logp
from rlpractice.algorithm.settings import LossSettings
from rlpractice.errors import UserError


@dataclass
class Sequence:
    ids: list[int]
    loss_mask: list[int]
    advantage: float = 0.0
    sampler_logps: list[float] | None = None  # the inference engine's log-probs of the completion tokens


def pick_device(name: str) -> torch.device:
    """`learner.device`: auto (CUDA when there is a GPU, else CPU), cpu, cuda, cuda:1, ..."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"config key learner.device={name}: no CUDA GPU is visible here; use auto or cpu")
    return device


def place(model, device_name: str) -> None:
    """Move the policy to `learner.device`. On a CPU its attention runs as plain matmuls (HF "eager"):
    as fast as SDPA in fp32 here, while SDPA's CPU kernel under bf16 autocast took 4x longer backward."""
    device = pick_device(device_name)
    model.to(device)
    if device.type == "cpu":
        model.set_attn_implementation("eager")


def use_bf16(setting: str | bool, device: torch.device) -> bool:
    """`learner.bf16`: auto = on CUDA only; true / false force it. A CPU learner stays fp32 by default: bf16
    autocast there learns a little faster but ended lower in held-out pass@1 and held more memory
    (scripts/bench_learner.py measures the speed)."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def autocast(device: torch.device | str, bf16: bool):
    """The forward's precision: bf16 autocast (fp32 weights, gradients and optimizer; log-probs are
    taken in fp32 from the logits), or plain fp32."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)


def microbatches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Indices grouped so each micro-batch's padded size (rows x longest) stays within the budget.

    Sorting by length first keeps padding small; a single sequence longer than the budget still
    gets a micro-batch of its own. Memory is bounded by the budget, not by the group size.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > token_budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def collate(seqs: list[Sequence], pad_id: int, device: torch.device | str = "cpu"):
    """Right-padded (input_ids, attention_mask, target_mask) where target_mask aligns with logits[:, :-1]."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    target = torch.zeros((len(seqs), width - 1), dtype=torch.float32)
    for row, s in enumerate(seqs):
        n = len(s.ids)
        ids[row, :n] = torch.tensor(s.ids)
        attn[row, :n] = 1
        target[row, : n - 1] = torch.tensor(s.loss_mask[1:n], dtype=torch.float32)
    return ids.to(device), attn.to(device), target.to(device)


def token_logprobs(model, ids: torch.Tensor, attn: torch.Tensor, with_entropy: bool = False,
                   entropy_grad: bool = False, bf16: bool = False):
    """log p(token_t | tokens_<t) for t = 1..T-1, shape [B, T-1] (and, if asked, the entropy of each of
    those next-token distributions, same shape; differentiable only with `entropy_grad`). `bf16`: the
    forward in bf16 autocast."""
    with autocast(ids.device, bf16):
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    return logp_and_entropy(logits, ids[:, 1:], with_entropy, entropy_grad)


def logp_and_entropy(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool = False,
                     entropy_grad: bool = False):
    """log p(targets) under `logits` [B, T, V] (and, if asked, each position's entropy), in fp32 from one
    log-softmax: over a large vocabulary every [B, T, V] pass and copy counts in time and memory."""
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32)  # fp32 even from bf16 logits, no extra copy
    logp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logp
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


def prompt_length(s: Sequence) -> int:
    """Tokens before the first target: the prompt the sequence's completion continues."""
    return s.loss_mask.index(1) if 1 in s.loss_mask else len(s.ids)


def shared_prompt_logprobs(model, seqs: list[Sequence], pad_id: int, device: torch.device | str,
                           with_entropy: bool = False, entropy_grad: bool = False, bf16: bool = False):
    """`token_logprobs` of a micro-batch, laid out exactly like `collate`'s [B, T-1], computed with each
    distinct prompt run once: a forward over the prompts fills a KV cache, whose rows are then repeated
    for every sequence continuing that prompt, and a second forward runs only the completions on top.
    Gradients flow through the cache into the prompt forward, so the update is the one `collate` gives.
    Every sequence needs a prompt of at least one token (its first target must have a context)."""
    starts = [prompt_length(s) for s in seqs]
    if min(starts) < 1:
        raise ValueError("shared_prompt_logprobs: a sequence's first token is a target; it has no prompt to share")
    prompt_row: dict[tuple[int, ...], int] = {}
    owner = [prompt_row.setdefault(tuple(s.ids[:p]), len(prompt_row)) for s, p in zip(seqs, starts, strict=True)]
    prompts = list(prompt_row)
    prompt_width, comp_lens = max(map(len, prompts)), [len(s.ids) - p for s, p in zip(seqs, starts, strict=True)]
    comp_width = max(comp_lens)
    prompt_ids = torch.full((len(prompts), prompt_width), pad_id, dtype=torch.long)
    for row, p in enumerate(prompts):
        prompt_ids[row, : len(p)] = torch.tensor(p)
    comp_ids = torch.full((len(seqs), comp_width), pad_id, dtype=torch.long)
    # keys a completion may see: its own prompt (not the pads after it), then its own tokens
    attn = torch.zeros((len(seqs), prompt_width + comp_width), dtype=torch.long)
    for row, (s, start) in enumerate(zip(seqs, starts, strict=True)):
        comp_ids[row, : comp_lens[row]] = torch.tensor(s.ids[start:])
        attn[row, : start] = 1
        attn[row, prompt_width : prompt_width + comp_lens[row]] = 1
    rows, start_col = torch.tensor(owner, device=device), torch.tensor(starts).unsqueeze(1)
    with autocast(device, bf16):
        # right-padded prompts need no mask: causal attention keeps real tokens off the pads after them
        first = model(input_ids=prompt_ids.to(device), use_cache=True, past_key_values=DynamicCache())
        last = first.logits[torch.arange(len(prompts)), torch.tensor([len(p) for p in prompts]) - 1]
        cache = first.past_key_values
        cache.batch_select_indices(rows)  # one cache row per sequence (differentiable indexing)
        positions = start_col + torch.arange(comp_width)
        rest = model(input_ids=comp_ids.to(device), attention_mask=attn.to(device),
                     position_ids=positions.to(device), past_key_values=cache, use_cache=True)
        # logits predicting completion token k: the prompt's last position for k = 0, else completion k-1
        logits = torch.cat([last[rows].unsqueeze(1), rest.logits[:, :-1]], dim=1)
    comp = logp_and_entropy(logits, comp_ids.to(device), with_entropy, entropy_grad)
    comp_logp, comp_entropy = comp if with_entropy else (comp, None)
    # back to collate's layout: position t predicts token t+1, so completion token k sits at start - 1 + k
    width = max(len(s.ids) for s in seqs)
    k = torch.arange(width - 1).unsqueeze(0) - (start_col - 1)
    valid = ((k >= 0) & (k < torch.tensor(comp_lens).unsqueeze(1))).to(device)
    index = k.clamp(0, comp_width - 1).to(device)
    logp = comp_logp.gather(1, index) * valid
    if not with_entropy:
        return logp
    return logp, comp_entropy.gather(1, index) * valid


def _forward(model, batch: list[Sequence], pad_id: int, device, share_prompts: bool, with_entropy: bool = False,
             entropy_grad: bool = False, bf16: bool = False):
    """(log-probs[, entropy], target mask) of one micro-batch, by either path (same values)."""
    ids, attn, target = collate(batch, pad_id, device)
    if share_prompts:
        return shared_prompt_logprobs(model, batch, pad_id, device, with_entropy, entropy_grad, bf16), target
    return token_logprobs(model, ids, attn, with_entropy, entropy_grad, bf16), target


def _microbatches(seqs: list[Sequence], token_budget: int, share_prompts: bool) -> list[list[int]]:
    """With shared prompts the budget counts completion tokens (each micro-batch adds one copy of each of
    its distinct prompts on top)."""
    return microbatches([len(s.ids) - (prompt_length(s) if share_prompts else 0) for s in seqs], token_budget)


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
    forward in bf16 autocast (`use_bf16`). `total_targets`: the whole batch's target tokens when `seqs` is one
    learner rank's share of it (None: `seqs` is the whole batch)."""
    model.train()
    device = model.device
    total_targets = target_tokens(seqs) if total_targets is None else total_targets
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for idx in even_out(microbatches([len(s.ids) for s in seqs], token_budget), device):
        if not idx:
            idle_pass(model, pad_id, device, share_prompts=False, backward=True)
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
    device = model.device
    out: list[torch.Tensor | None] = [None] * len(seqs)
    for idx in even_out(_microbatches(seqs, token_budget, share_prompts), device):
        if not idx:
            idle_pass(model, pad_id, device, share_prompts, backward=False)
            continue
        lp = _forward(model, [seqs[i] for i in idx], pad_id, device, share_prompts, bf16=bf16)[0].cpu()
        for row, i in enumerate(idx):
            out[i] = lp[row, : len(seqs[i].ids) - 1]
    return out  # type: ignore[return-value]


@memory_hint
def policy_gradient_step(model, optimizer, seqs: list[Sequence], old_logps: list[torch.Tensor] | None,
                         loss: LossSettings, *, pad_id: int, num_sequences: int | None = None,
                         num_tokens: int | None = None, ref_logps: list[torch.Tensor] | None = None,
                         share_prompts: bool = False, bf16: bool = False) -> dict:
    """One optimiser step of the clipped surrogate over `seqs`, with the objective `loss` describes.

    `num_sequences` and `num_tokens` count the whole batch, including sequences left out because their
    advantage is 0 (they add nothing to the gradient), so skipping them changes speed, not the update;
    None: `seqs` is the whole batch.
    `old_logps`: the sampling policy's log-probs (None: the samples are fresh, the ratio is 1 at the start).
    `ref_logps`: a frozen reference policy's log-probs, for the KL term (`loss.kl_coef`).
    `share_prompts` computes each distinct prompt once per micro-batch (`shared_prompt_logprobs`);
    `bf16` runs the forward in bf16 autocast (`use_bf16`).
    """
    num_sequences = len(seqs) if num_sequences is None else num_sequences
    num_tokens = target_tokens(seqs) if num_tokens is None else num_tokens
    model.train()
    device = model.device
    optimizer.zero_grad(set_to_none=True)
    kl_fn = {"k1": kl_k1, "k3": kl_k3}[loss.kl_estimator]
    loss_sum, clipped, counted, entropy_sum, kl_sum = 0.0, 0.0, 0.0, 0.0, 0.0
    mismatch_sum, mismatch_count = 0.0, 0
    for idx in even_out(_microbatches(seqs, loss.token_budget, share_prompts), device):
        if not idx:
            idle_pass(model, pad_id, device, share_prompts, backward=True)
            continue
        batch = [seqs[i] for i in idx]
        (logp, entropy), target = _forward(model, batch, pad_id, device, share_prompts, with_entropy=True,
                                           entropy_grad=loss.entropy_coef > 0, bf16=bf16)
        old = logp.detach() if old_logps is None else _padded(old_logps, idx, logp)
        adv = torch.tensor([s.advantage for s in batch], dtype=torch.float32, device=device)
        token_logp = logp
        if loss.ratio_level == "sequence":
            logp = sequence_level_logp(logp, old, target)
        per_token, was_clipped = clipped_surrogate(logp, old, adv, loss.eps_low, loss.eps_high)
        if ref_logps is not None:
            kl = kl_fn(token_logp, _padded(ref_logps, idx, logp))
            per_token = per_token + loss.kl_coef * kl
            kl_sum += (kl.detach() * target).sum().item()
        if loss.entropy_coef > 0:
            per_token = per_token - loss.entropy_coef * entropy
        micro_loss = aggregate(per_token, target, loss.aggregation, num_sequences, num_tokens, loss.max_tokens)
        micro_loss.backward()
        loss_sum += micro_loss.item()
        clipped += (was_clipped.float() * target).sum().item()
        counted += target.sum().item()
        entropy_sum += (entropy.detach() * target).sum().item()
        for row, s in enumerate(batch):  # train/inference mismatch: learner vs engine log-prob, same token
            if s.sampler_logps:
                n = len(s.sampler_logps)
                mine = token_logp[row, len(s.ids) - 1 - n : len(s.ids) - 1].detach()
                sampled = torch.tensor(s.loss_mask[len(s.ids) - n :], device=device)  # tools' output ids: 0
                mismatch_sum += ((mine - torch.tensor(s.sampler_logps, device=device)).abs() * sampled).sum().item()
                mismatch_count += int(sampled.sum().item())
    grad_norm = clip_grad_norm(model, loss.grad_clip)
    optimizer.step()
    out = {"loss": loss_sum, "clip_ratio": clipped / max(counted, 1.0), "grad_norm": grad_norm,
           "entropy": entropy_sum / max(counted, 1.0)}
    if ref_logps is not None:
        out["kl"] = kl_sum / max(counted, 1.0)
    if mismatch_count:
        out["logprob_mismatch"] = mismatch_sum / mismatch_count  # mean |log p_learner - log p_sampler| per token
    return out


def even_out(batches: list[list[int]], device: torch.device) -> list[list[int]]:
    """With several learner ranks (learner_group.py) every rank must run as many forwards and backwards as the
    others, as each one gathers the sharded weights from all of them: pad with empty micro-batches (`idle_pass`)
    up to the most any rank has. One process: `batches` as they are."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return batches
    most = torch.tensor([len(batches)], device=device)
    dist.all_reduce(most, op=dist.ReduceOp.MAX)
    return batches + [[] for _ in range(int(most.item()) - len(batches))]


def idle_pass(model, pad_id: int, device, share_prompts: bool, backward: bool) -> None:
    """A rank with no micro-batch left still takes part in the others' forward (and backward): on a two-token
    sequence, with a loss of zero, so it adds nothing to the gradient."""
    logp = _forward(model, [Sequence([pad_id, pad_id], [0, 1])], pad_id, device, share_prompts)[0]
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


def _padded(per_sequence: list[torch.Tensor], idx: list[int], like: torch.Tensor) -> torch.Tensor:
    """Per-sequence log-prob tensors of micro-batch `idx`, right-padded with 0 to `like`'s shape."""
    out = torch.zeros_like(like, requires_grad=False)
    for row, i in enumerate(idx):
        out[row, : per_sequence[i].numel()] = per_sequence[i].to(like.device)
    return out
