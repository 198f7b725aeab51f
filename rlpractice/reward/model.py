"""A reward model: the SFT model's body with a one-number head (a standard `...ForSequenceClassification`,
num_labels=1) that reads prompt + completion and scores it at its last token; how it is loaded, scored and trained.

Training (stage rm, stages/reward_model.py) takes steps on batches of (chosen, rejected) pairs, minimising the
Bradley-Terry loss (+ centring; algorithm/preference.py) so that chosen outscores rejected. RL scores all of a step's
samples with `score_shared` (token ids, each group's prompt run once, as the learner does); `score` (texts) and
`score_ids` (token ids) score any sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from rlpractice.algorithm.preference import bradley_terry_loss, pair_accuracy, preference_loss
from rlpractice.errors import UserError
from rlpractice.learner.device import place, precision, use_bf16
from rlpractice.learner.forward import PromptKV, on_prompts, right_pad
from rlpractice.learner.microbatch import microbatches
from rlpractice.textbook.preferences import PreferencePair

STAGE = "rm"  # the stage that trains it, and its folder under checkpoints/


@dataclass(frozen=True)
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    margin: float
    kind: str = ""


def load_reward_model(path: str | Path):
    """(model, tokenizer) from an HF folder: a causal LM (its body is kept and a fresh scalar head added,
    seeded by torch's RNG) or a reward model saved before."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"reward model path {path} is not an HF checkpoint directory (no config.json there)")
    config = AutoConfig.from_pretrained(path)
    if any(a.endswith("ForSequenceClassification") for a in config.architectures or []) and config.num_labels != 1:
        raise UserError(f"{path} is a classifier with {config.num_labels} labels; a reward model has one score")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # many released checkpoints have none; pads are never scored
        tokenizer.pad_token = tokenizer.eos_token
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized ... TRAIN this model": that is the plan
    try:
        # pad_token_id: the head reads each row's last non-pad token, so batches of unequal lengths score
        # exactly as single rows do, here and wherever the saved folder is loaded
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32,
                                                                   pad_token_id=tokenizer.pad_token_id)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def sequence_ids(tokenizer, prompt: str, completion: str) -> list[int]:
    """prompt + completion + EOS, tokenised as SFT and RL see them (prompt ids, then the completion's ids,
    which end in EOS when the policy finished its answer)."""
    return (tokenizer(prompt)["input_ids"] + tokenizer(completion, add_special_tokens=False)["input_ids"]
            + [tokenizer.eos_token_id])


def encode_pair(tokenizer, pair: PreferencePair, margin: float) -> EncodedPair:
    return EncodedPair(sequence_ids(tokenizer, pair.prompt, pair.chosen), sequence_ids(tokenizer, pair.prompt,
                       pair.rejected), margin if pair.margin is None else pair.margin, pair.kind)


def forward_scores(model, seqs: list[list[int]], bf16: bool = False) -> torch.Tensor:
    """The score of each sequence, one forward, right-padded; [len(seqs)] in fp32."""
    ids, attn = right_pad(seqs, model.config.pad_token_id)
    with precision(model.device, bf16):
        logits = model(input_ids=ids.to(model.device), attention_mask=attn.to(model.device)).logits
    return logits[:, 0].float()


@torch.no_grad()
def score_ids(model, seqs: list[list[int]], batch_tokens: int, bf16: bool = False) -> list[float]:
    """Scores of token-id sequences, in micro-batches of at most `batch_tokens` padded tokens (sorted by
    length, so little padding): all of a step's samples at once, memory bounded by the budget."""
    model.eval()
    out = [0.0] * len(seqs)
    for idx in microbatches([len(s) for s in seqs], batch_tokens):
        for i, value in zip(idx, forward_scores(model, [seqs[i] for i in idx], bf16).tolist(), strict=True):
            out[i] = value
    return out


def score(model, tokenizer, prompts: list[str], completions: list[str], batch_tokens: int,
          bf16: bool = False) -> list[float]:
    """The reward model's score of each (prompt, finished completion), as it was trained to give them."""
    return score_ids(model, [sequence_ids(tokenizer, p, c) for p, c in zip(prompts, completions, strict=True)],
                     batch_tokens, bf16)


def preference_step(model, optimizer, pairs: list[EncodedPair], token_budget: int, grad_clip: float,
                    center_coef: float, bf16: bool = False) -> dict:
    """One optimiser step on a batch of pairs. A micro-batch holds whole pairs (chosen and rejected rows
    together), so each adds its exact share of the batch loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    chosen, rejected, loss_sum = [], [], 0.0
    for idx in microbatches([max(len(p.chosen), len(p.rejected)) for p in pairs], max(token_budget // 2, 1)):
        batch = [pairs[i] for i in idx]
        scores = forward_scores(model, [p.chosen for p in batch] + [p.rejected for p in batch], bf16)
        r_c, r_r = scores[: len(batch)], scores[len(batch):]
        margin = torch.tensor([p.margin for p in batch], device=scores.device)
        loss = preference_loss(r_c, r_r, margin, center_coef) * (len(batch) / len(pairs))
        loss.backward()
        loss_sum += loss.item()
        chosen.append(r_c.detach())
        rejected.append(r_r.detach())
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip).item()
    optimizer.step()
    r_c, r_r = torch.cat(chosen), torch.cat(rejected)
    return {"loss": loss_sum, "accuracy": pair_accuracy(r_c, r_r), "margin": (r_c - r_r).mean().item(),
            "rewards/chosen": r_c.mean().item(), "rewards/rejected": r_r.mean().item(), "grad_norm": grad_norm}


def evaluate_pairs(model, pairs: list[EncodedPair], batch_tokens: int, bf16: bool = False) -> dict:
    """Held-out pair accuracy (overall and per kind of pair, when the pairs have kinds), Bradley-Terry loss,
    mean scores."""
    scores = score_ids(model, [p.chosen for p in pairs] + [p.rejected for p in pairs], batch_tokens, bf16)
    r_c, r_r = torch.tensor(scores[: len(pairs)]), torch.tensor(scores[len(pairs):])
    out = {"accuracy": pair_accuracy(r_c, r_r), "loss": bradley_terry_loss(r_c, r_r).item(),
           "rewards/chosen": r_c.mean().item(), "rewards/rejected": r_r.mean().item()}
    for kind in sorted({p.kind for p in pairs} - {""}):
        rows = torch.tensor([p.kind == kind for p in pairs])
        out[f"accuracy/{kind}"] = pair_accuracy(r_c[rows], r_r[rows])
    return out


def load_scorer(path: str | Path, device: str, bf16_setting: str | bool):
    """A reward model for scoring, loaded once per run: frozen, on the learner's device; with its bf16 choice."""
    rm, tokenizer = load_reward_model(path)
    place(rm, device)
    return rm.requires_grad_(False), tokenizer, use_bf16(bf16_setting, rm.device)


@torch.no_grad()
def score_shared(model, prompts: list[list[int]], owner: list[int], completions: list[list[int]], batch_tokens: int,
                 bf16: bool = False) -> list[float]:
    """Scores of prompts[owner[i]] + completions[i], as `score_ids` gives them, with each distinct prompt of a
    micro-batch run once (learner/forward.py `PromptKV`, `on_prompts`, as the learner does): RL's samples come in
    groups that continue the same prompt, so this is about half the tokens. The budget counts completion tokens."""
    if not completions:
        return []
    if min(map(len, completions)) == 0 or not hasattr(model, "score"):  # nothing to continue, or an unknown head
        return score_ids(model, [prompts[o] + c for o, c in zip(owner, completions, strict=True)], batch_tokens, bf16)
    model.eval()
    body, pad, device = model.base_model, model.config.pad_token_id, model.device
    out = [0.0] * len(completions)
    for idx in microbatches([len(c) for c in completions], batch_tokens):
        keys = [tuple(prompts[owner[i]]) for i in idx]
        kv = PromptKV(body, list(dict.fromkeys(keys)), pad, device, bf16, last_logits=False)
        comps = [completions[i] for i in idx]
        hidden = on_prompts(body, kv, keys, comps, pad, device, bf16)[0].last_hidden_state
        with precision(device, bf16):  # the head reads each completion's last token
            values = model.score(hidden[torch.arange(len(idx)), torch.tensor([len(c) for c in comps]) - 1])
        for i, value in zip(idx, values[:, 0].float().tolist(), strict=True):
            out[i] = value
    return out
