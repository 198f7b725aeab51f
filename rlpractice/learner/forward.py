"""Token log-probs of sequences, with the prompt a group's samples share run once.

A *sequence* is (token_ids, loss_mask): loss_mask[i] = 1 when token i is a target to learn (every token in
pretraining, solution tokens in SFT, completion tokens in RL). In RL a group's samples all continue the same prompt:
`PromptKV` runs each distinct prompt through the model once and `on_prompts` runs the completions on top of its
keys and values (the KV cache, differentiable), instead of recomputing the prompt for every sample: the same
log-probs and gradients for about half the tokens. The reward model scores RL's samples the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import DynamicCache

from rlpractice.learner.device import precision


@dataclass
class Sequence:
    ids: list[int]
    loss_mask: list[int]
    advantage: float = 0.0
    sampler_logps: list[float] | None = None  # the inference engine's log-probs of the completion tokens
    old_logps: torch.Tensor | None = None  # the sampling policy's (None: fresh samples, the ratio starts at 1)
    ref_logps: torch.Tensor | None = None  # the frozen reference policy's, for the KL term


def right_pad(rows: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows right-padded with `pad_id` to the longest, and the mask of real tokens (1) and pads (0)."""
    ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    attn = torch.zeros(ids.shape, dtype=torch.long)
    for row, r in enumerate(rows):
        ids[row, : len(r)] = torch.tensor(r, dtype=torch.long)
        attn[row, : len(r)] = 1
    return ids, attn


def collate(seqs: list[Sequence], pad_id: int, device: torch.device | str = "cpu"):
    """Right-padded (input_ids, attention_mask, target_mask) where target_mask aligns with logits[:, :-1]."""
    ids, attn = right_pad([s.ids for s in seqs], pad_id)
    target = torch.zeros((len(seqs), ids.shape[1] - 1), dtype=torch.float32)
    for row, s in enumerate(seqs):
        target[row, : len(s.ids) - 1] = torch.tensor(s.loss_mask[1 : len(s.ids)], dtype=torch.float32)
    return ids.to(device), attn.to(device), target.to(device)


def token_logprobs(model, ids: torch.Tensor, attn: torch.Tensor, with_entropy: bool = False,
                   entropy_grad: bool = False, bf16: bool = False):
    """log p(token_t | tokens_<t) for t = 1..T-1, shape [B, T-1] (and, if asked, the entropy of each of
    those next-token distributions, same shape; differentiable only with `entropy_grad`). `bf16`: the
    forward in bf16 autocast."""
    with precision(ids.device, bf16):
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


class PromptKV:
    """Distinct prompts run through the model once: each layer's keys and values of them (the KV cache), and with
    `last_logits` the logits at each prompt's last token (they predict its completions' first token).

    `detach`: the completions attend to detached copies, which gather the gradients of every micro-batch,
    and `backward()` takes their sum through the prompt forward once, after the last micro-batch: a step
    computes each prompt once rather than once per micro-batch, for the same gradient."""

    def __init__(self, model, prompts: list[tuple[int, ...]], pad_id: int, device: torch.device | str,
                 bf16: bool = False, detach: bool = False, last_logits: bool = True):
        self.row = {p: i for i, p in enumerate(prompts)}
        ids, _ = right_pad(prompts, pad_id)
        self.width, self.last_logits = ids.shape[1], last_logits
        # the lm_head only at positions that end a prompt: no other prompt logit is used
        keep, column = torch.unique(torch.tensor([len(p) - 1 for p in prompts]), return_inverse=True)
        with precision(device, bf16):
            # right-padded prompts need no mask: causal attention keeps real tokens off the pads after them
            out = model(input_ids=ids.to(device), use_cache=True, past_key_values=DynamicCache(),
                        **({"logits_to_keep": keep.to(device)} if last_logits else {}))
        self.outputs = [out.logits[torch.arange(len(prompts), device=device), column.to(device)]] if last_logits \
            else []
        for layer in out.past_key_values.layers:
            self.outputs += [layer.keys, layer.values]
        self.inputs = [t.detach().requires_grad_(t.requires_grad) for t in self.outputs] if detach else self.outputs

    def select(self, rows: torch.Tensor) -> tuple[DynamicCache, torch.Tensor | None]:
        """A KV cache with one row per sequence (prompt `rows[i]`'s) and those prompts' last-token logits.
        Picked by a one-hot product (exact: one 1, zeros elsewhere): its backward, which sums each prompt's
        rows, is a small matmul, several times faster here than indexing's scatter-add."""
        one_hot = F.one_hot(rows, len(self.row))
        picked = [(one_hot.to(t.dtype) @ t.flatten(1)).view(len(rows), *t.shape[1:]) for t in self.inputs]
        last = picked.pop(0) if self.last_logits else None
        cache = DynamicCache()
        for layer in range(len(picked) // 2):
            cache.update(picked[2 * layer], picked[2 * layer + 1], layer)
        return cache, last

    def backward(self) -> None:
        """With `detach`: the micro-batches' gradients on the copies, through the prompt forward."""
        pairs = [(out, inp.grad) for out, inp in zip(self.outputs, self.inputs, strict=True)
                 if inp is not out and inp.grad is not None]
        if pairs:
            torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])


def on_prompts(model, prompts: PromptKV, keys: list[tuple[int, ...]], comps: list[list[int]], pad_id: int,
               device: torch.device | str, bf16: bool = False):
    """One forward of each completion `comps[i]` on top of its prompt `keys[i]`'s cached keys and values: it
    attends to its own prompt (not the pads after it), then to its own earlier tokens. Returns the model's output,
    the completions' right-padded ids and their prompts' last-token logits (None without `last_logits`)."""
    comp_ids, comp_attn = right_pad(comps, pad_id)
    starts = torch.tensor([len(k) for k in keys]).unsqueeze(1)
    attn = torch.cat([(torch.arange(prompts.width) < starts).long(), comp_attn], dim=1)
    cache, last = prompts.select(torch.tensor([prompts.row[k] for k in keys], device=device))
    with precision(device, bf16):
        out = model(input_ids=comp_ids.to(device), attention_mask=attn.to(device),
                    position_ids=(starts + torch.arange(comp_ids.shape[1])).to(device), past_key_values=cache,
                    use_cache=True)
    return out, comp_ids.to(device), last


def shared_prompt_logprobs(model, seqs: list[Sequence], pad_id: int, device: torch.device | str,
                           with_entropy: bool = False, entropy_grad: bool = False, bf16: bool = False,
                           prompts: PromptKV | None = None):
    """`token_logprobs` of a micro-batch, laid out exactly like `collate`'s [B, T-1], computed with each
    distinct prompt run once (`PromptKV`, `on_prompts`). Gradients flow through the cache into the prompt forward,
    so the update is the one `collate` gives. `prompts`: the step's prompts, run already (`step_prompts`); None:
    this micro-batch's prompts are run here. Every sequence needs a prompt of at least one token (its first target
    must have a context)."""
    starts = [prompt_length(s) for s in seqs]
    if min(starts) < 1:
        raise ValueError("shared_prompt_logprobs: a sequence's first token is a target; it has no prompt to share")
    keys = [tuple(s.ids[:p]) for s, p in zip(seqs, starts, strict=True)]
    if prompts is None:
        prompts = PromptKV(model, list(dict.fromkeys(keys)), pad_id, device, bf16)
    comps = [s.ids[p:] for s, p in zip(seqs, starts, strict=True)]
    rest, comp_ids, last = on_prompts(model, prompts, keys, comps, pad_id, device, bf16)
    # logits predicting completion token k: the prompt's last position for k = 0, else completion k-1
    logits = torch.cat([last.unsqueeze(1), rest.logits[:, :-1]], dim=1)
    comp = logp_and_entropy(logits, comp_ids, with_entropy, entropy_grad)
    comp_logp, comp_entropy = comp if with_entropy else (comp, None)
    # back to collate's layout: position t predicts token t+1, so completion token k sits at start - 1 + k
    k = torch.arange(max(len(s.ids) for s in seqs) - 1).unsqueeze(0) - (torch.tensor(starts).unsqueeze(1) - 1)
    valid = ((k >= 0) & (k < torch.tensor(list(map(len, comps))).unsqueeze(1))).to(device)
    index = k.clamp(0, comp_ids.shape[1] - 1).to(device)
    logp = comp_logp.gather(1, index) * valid
    if not with_entropy:
        return logp
    return logp, comp_entropy.gather(1, index) * valid


def step_prompts(model, seqs: list[Sequence], pad_id: int, device, token_budget: int, micro_batches: int,
                 bf16: bool = False) -> PromptKV | None:
    """A step's distinct prompts run once for all its micro-batches (`PromptKV`, gradients gathered while
    grad is on), when there are several micro-batches, the prompts fit one micro-batch's budget and one
    process learns; None: each micro-batch runs its own prompts."""
    if micro_batches < 2 or (dist.is_available() and dist.is_initialized()):
        return None
    prompts = list(dict.fromkeys(tuple(s.ids[: prompt_length(s)]) for s in seqs))
    if min(map(len, prompts)) < 1 or len(prompts) * max(map(len, prompts)) > token_budget:
        return None
    return PromptKV(model, prompts, pad_id, device, bf16, detach=torch.is_grad_enabled())
