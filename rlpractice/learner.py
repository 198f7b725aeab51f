"""The torch learner: token log-probs, token-budget micro-batches, and the two update rules
(next-token cross-entropy for pretrain/SFT, clipped policy gradient for RL).

A *sequence* here is (token_ids, loss_mask): loss_mask[i] = 1 when token i is a target to learn
(every token in pretraining, solution tokens in SFT, completion tokens in RL).

In RL a group's samples all continue the same prompt. With `share_prompts` the learner runs each
distinct prompt through the model once per step (or per micro-batch, when a step's prompts would not fit
one micro-batch's budget) and lets its samples' completions attend to that prompt's keys and values (the
KV cache, differentiable), instead of recomputing the prompt for every sample: the same log-probs and
gradients for about half the tokens here.

On a CPU in fp32 the linear layers' products run through oneDNN rather than the BLAS torch calls for a
matmul (`_OneDNNLinear`): the same fp32 arithmetic, ~2x the speed on the default model's shapes on an AMD
CPU, where MKL keeps to its AVX2 kernels (scripts/bench_learner.py --mode default measures both).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from transformers import DynamicCache

from rlpractice.algorithm.losses import (
    aggregate,
    clipped_surrogate,
    kl_k1,
    kl_k3,
    sequence_level_logp,
    truncated_is_weights,
)
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


@functools.cache
def onednn_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and callable(torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


_cpu_linear = "auto"  # learner.cpu_linear of this process: set once by `use_cpu_settings`


def use_cpu_settings(threads: int | None = None, cpu_linear: str = "auto") -> None:
    """This process's CPU learner settings (learner.threads, learner.cpu_linear; hardware.py resolves `auto`)."""
    global _cpu_linear
    if threads:
        torch.set_num_threads(int(threads))
    _cpu_linear = cpu_linear


def _dense_product(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """a @ b_t.T through oneDNN; `a` must be contiguous, `b_t` may be a transposed view."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, None, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """F.linear in fp32 with the forward and both backward products run by oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        dx = _dense_product(dy, weight.t()) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:  # dy^T x; oneDNN's first operand must be dense: transpose the narrower one
            if x2.shape[1] <= dy2.shape[1]:
                dw = _dense_product(x2.t().contiguous(), dy2.t()).t()
            else:
                dw = _dense_product(dy2.t().contiguous(), x2.t())
        db = dy2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


class _OneDNNLinears(TorchFunctionMode):
    """Inside it, every fp32 CPU F.linear on plain tensors is a `_OneDNNLinear` (anything else runs as it was)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and len(args) >= 2:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            plain = all(type(t) in (torch.Tensor, torch.nn.Parameter) for t in (x, weight, bias) if t is not None)
            if (plain and x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu"
                    and weight.is_contiguous() and not torch.is_autocast_enabled("cpu")):
                return _OneDNNLinear.apply(x, weight, bias)
        return func(*args, **kwargs)


def _precision(device: torch.device | str, bf16: bool):
    """The learner forward's context: bf16 autocast (`autocast`), or in fp32 on a CPU the linear layers
    through oneDNN (nothing changes where oneDNN is missing)."""
    if not bf16 and torch.device(device).type == "cpu" and _cpu_linear != "aten" and onednn_available():
        return _OneDNNLinears()
    return autocast(device, bf16) if bf16 else contextlib.nullcontext()


MICRO_BATCH_COST = 256  # a micro-batch's fixed work, in padded tokens of the default model (bench_learner.py)


def microbatches(lengths: list[int], token_budget: int, batch_cost: int = MICRO_BATCH_COST) -> list[list[int]]:
    """Indices grouped so each micro-batch's padded size (rows x longest) stays within the budget.

    Sorted by length, the sequences fall into runs of one length; a micro-batch takes consecutive runs, padded
    to its longest, and the cut points minimise padded tokens plus `batch_cost` per micro-batch (filling each
    micro-batch up to the budget instead padded the default RL batch by a quarter). A single sequence longer
    than the budget still gets a micro-batch of its own. Memory is bounded by the budget, not by the group size.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs: list[list[int]] = []
    for i in order:
        if runs and lengths[runs[-1][0]] == lengths[i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    rows = [max(1, token_budget // max(lengths[run[0]], 1)) for run in runs]  # rows that fit, padded to this run
    best, cut = [0.0] + [float("inf")] * len(runs), [0] * (len(runs) + 1)  # least cost of runs[:b], its last cut
    for b in range(1, len(runs) + 1):
        count = 0
        for a in range(b - 1, -1, -1):
            count += len(runs[a])
            cost = best[a] + count * lengths[runs[b - 1][0]] + batch_cost * -(-count // rows[b - 1])
            if cost < best[b]:
                best[b], cut[b] = cost, a
    batches: list[list[int]] = []
    b = len(runs)
    while b:
        members = [i for run in runs[cut[b] : b] for i in run]
        batches[:0] = [members[k : k + rows[b - 1]] for k in range(0, len(members), rows[b - 1])]
        b = cut[b]
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
    with _precision(ids.device, bf16):
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
    """Distinct prompts run through the model once: each layer's keys and values of them (the KV cache), and
    the logits at each prompt's last token (they predict its completions' first token).

    `detach`: the completions attend to detached copies, which gather the gradients of every micro-batch,
    and `backward()` takes their sum through the prompt forward once, after the last micro-batch: a step
    computes each prompt once rather than once per micro-batch, for the same gradient."""

    def __init__(self, model, prompts: list[tuple[int, ...]], pad_id: int, device: torch.device | str,
                 bf16: bool = False, detach: bool = False):
        self.row = {p: i for i, p in enumerate(prompts)}
        self.width = max(map(len, prompts))
        ids = torch.full((len(prompts), self.width), pad_id, dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, : len(p)] = torch.tensor(p)
        # the lm_head only at positions that end a prompt: no other prompt logit is used
        keep, column = torch.unique(torch.tensor([len(p) - 1 for p in prompts]), return_inverse=True)
        with _precision(device, bf16):
            # right-padded prompts need no mask: causal attention keeps real tokens off the pads after them
            out = model(input_ids=ids.to(device), use_cache=True, past_key_values=DynamicCache(),
                        logits_to_keep=keep.to(device))
        self.outputs = [out.logits[torch.arange(len(prompts), device=device), column.to(device)]]
        for layer in out.past_key_values.layers:
            self.outputs += [layer.keys, layer.values]
        self.inputs = [t.detach().requires_grad_(t.requires_grad) for t in self.outputs] if detach else self.outputs

    def select(self, rows: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
        """A KV cache with one row per sequence (prompt `rows[i]`'s) and those prompts' last-token logits.
        Picked by a one-hot product (exact: one 1, zeros elsewhere): its backward, which sums each prompt's
        rows, is a small matmul, several times faster here than indexing's scatter-add."""
        one_hot = F.one_hot(rows, len(self.row))
        picked = [(one_hot.to(t.dtype) @ t.flatten(1)).view(len(rows), *t.shape[1:]) for t in self.inputs]
        cache = DynamicCache()
        for layer in range(len(picked) // 2):
            cache.update(picked[1 + 2 * layer], picked[2 + 2 * layer], layer)
        return cache, picked[0]

    def backward(self) -> None:
        """With `detach`: the micro-batches' gradients on the copies, through the prompt forward."""
        pairs = [(out, inp.grad) for out, inp in zip(self.outputs, self.inputs, strict=True)
                 if inp is not out and inp.grad is not None]
        if pairs:
            torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])


def shared_prompt_logprobs(model, seqs: list[Sequence], pad_id: int, device: torch.device | str,
                           with_entropy: bool = False, entropy_grad: bool = False, bf16: bool = False,
                           prompts: PromptKV | None = None):
    """`token_logprobs` of a micro-batch, laid out exactly like `collate`'s [B, T-1], computed with each
    distinct prompt run once: a forward over the prompts fills a KV cache (`PromptKV`), whose rows are then
    repeated for every sequence continuing that prompt, and a second forward runs only the completions on top.
    Gradients flow through the cache into the prompt forward, so the update is the one `collate` gives.
    `prompts`: the step's prompts, run already (`step_prompts`); None: this micro-batch's prompts are run here.
    Every sequence needs a prompt of at least one token (its first target must have a context)."""
    starts = [prompt_length(s) for s in seqs]
    if min(starts) < 1:
        raise ValueError("shared_prompt_logprobs: a sequence's first token is a target; it has no prompt to share")
    keys = [tuple(s.ids[:p]) for s, p in zip(seqs, starts, strict=True)]
    if prompts is None:
        prompts = PromptKV(model, list(dict.fromkeys(keys)), pad_id, device, bf16)
    prompt_width, comp_lens = prompts.width, [len(s.ids) - p for s, p in zip(seqs, starts, strict=True)]
    comp_width = max(comp_lens)
    comp_ids = torch.full((len(seqs), comp_width), pad_id, dtype=torch.long)
    # keys a completion may see: its own prompt (not the pads after it), then its own tokens
    attn = torch.zeros((len(seqs), prompt_width + comp_width), dtype=torch.long)
    for row, (s, start) in enumerate(zip(seqs, starts, strict=True)):
        comp_ids[row, : comp_lens[row]] = torch.tensor(s.ids[start:])
        attn[row, : start] = 1
        attn[row, prompt_width : prompt_width + comp_lens[row]] = 1
    rows, start_col = torch.tensor([prompts.row[k] for k in keys], device=device), torch.tensor(starts).unsqueeze(1)
    cache, last = prompts.select(rows)  # one cache row per sequence (differentiable)
    with _precision(device, bf16):
        positions = start_col + torch.arange(comp_width)
        rest = model(input_ids=comp_ids.to(device), attention_mask=attn.to(device),
                     position_ids=positions.to(device), past_key_values=cache, use_cache=True)
        # logits predicting completion token k: the prompt's last position for k = 0, else completion k-1
        logits = torch.cat([last.unsqueeze(1), rest.logits[:, :-1]], dim=1)
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


def _forward(model, batch: list[Sequence], pad_id: int, device, share_prompts: bool, with_entropy: bool = False,
             entropy_grad: bool = False, bf16: bool = False, prompts: PromptKV | None = None):
    """(log-probs[, entropy], target mask) of one micro-batch, by either path (same values)."""
    ids, attn, target = collate(batch, pad_id, device)
    if share_prompts:
        return shared_prompt_logprobs(model, batch, pad_id, device, with_entropy, entropy_grad, bf16, prompts), target
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
    batches = _microbatches(seqs, token_budget, share_prompts)
    prompts = step_prompts(model, seqs, pad_id, device, token_budget, len(batches), bf16) if share_prompts else None
    for idx in even_out(batches, device):
        if not idx:
            idle_pass(model, pad_id, device, share_prompts, backward=False)
            continue
        lp = _forward(model, [seqs[i] for i in idx], pad_id, device, share_prompts, bf16=bf16, prompts=prompts)[0]
        lp = lp.cpu()
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
    `share_prompts` computes each distinct prompt once per step or micro-batch (`shared_prompt_logprobs`);
    `bf16` runs the forward in bf16 autocast (`use_bf16`).
    """
    num_sequences = len(seqs) if num_sequences is None else num_sequences
    num_tokens = target_tokens(seqs) if num_tokens is None else num_tokens
    model.train()
    device = model.device
    optimizer.zero_grad(set_to_none=True)
    kl_fn = {"k1": kl_k1, "k3": kl_k3}[loss.kl_estimator]
    loss_sum, clipped, counted, entropy_sum, kl_sum = 0.0, 0.0, 0.0, 0.0, 0.0
    mismatch_sum, mismatch_count, is_sum, is_truncated = 0.0, 0, 0.0, 0.0
    batches = _microbatches(seqs, loss.token_budget, share_prompts)
    prompts = step_prompts(model, seqs, pad_id, device, loss.token_budget, len(batches), bf16) if share_prompts \
        else None
    for idx in even_out(batches, device):
        if not idx:
            idle_pass(model, pad_id, device, share_prompts, backward=True)
            continue
        batch = [seqs[i] for i in idx]
        (logp, entropy), target = _forward(model, batch, pad_id, device, share_prompts, with_entropy=True,
                                           entropy_grad=loss.entropy_coef > 0, bf16=bf16, prompts=prompts)
        old = logp.detach() if old_logps is None else _padded(old_logps, idx, logp)
        adv = torch.tensor([s.advantage for s in batch], dtype=torch.float32, device=device)
        token_logp = logp
        if loss.ratio_level == "sequence":
            logp = sequence_level_logp(logp, old, target)
        per_token, was_clipped = clipped_surrogate(logp, old, adv, loss.eps_low, loss.eps_high)
        sampler, sampled = _sampler_logps(batch, token_logp)
        if loss.sampler_is_cap and sampled.any():  # the engines' precision differs: reweight to the learner's policy
            weight, truncated = truncated_is_weights(old, torch.where(sampled, sampler, old), loss.sampler_is_cap)
            per_token = per_token * weight
            is_sum += (weight * sampled).sum().item()
            is_truncated += (truncated & sampled).sum().item()
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
        # train/inference mismatch: learner vs engine log-prob of the same sampled token
        mismatch_sum += ((token_logp.detach() - sampler).abs() * sampled).sum().item()
        mismatch_count += int(sampled.sum().item())
    if prompts is not None:
        prompts.backward()
    grad_norm = clip_grad_norm(model, loss.grad_clip)
    optimizer.step()
    out = {"loss": loss_sum, "clip_ratio": clipped / max(counted, 1.0), "grad_norm": grad_norm,
           "entropy": entropy_sum / max(counted, 1.0)}
    if ref_logps is not None:
        out["kl"] = kl_sum / max(counted, 1.0)
    if mismatch_count:
        out["logprob_mismatch"] = mismatch_sum / mismatch_count  # mean |log p_learner - log p_sampler| per token
        if loss.sampler_is_cap:
            out["sampler_is/ratio_mean"] = is_sum / mismatch_count
            out["sampler_is/truncated_frac"] = is_truncated / mismatch_count
    return out


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
