"""Stage rm, preference pairs -> a reward model: what a verifier is for answers no checker can grade.

The SFT model's body with a one-number head (a standard `...ForSequenceClassification`, num_labels=1) reads
prompt + completion and scores it at its last token. Training draws a batch of (chosen, rejected) pairs, scores
both, and minimises the Bradley-Terry loss (+ centring; algorithm/preference.py), so that chosen outscores
rejected. Held-out pair accuracy is logged every `rm.eval_every` steps. A stopped stage continues with
resume=true from its last step checkpoint (checkpoint.py), as pretraining and SFT do; the result is an HF
folder that `AutoModelForSequenceClassification.from_pretrained` loads anywhere.

RL calls `score_shared` once per step for all its samples (token ids, each group's prompt run once), in
micro-batches; `score` (texts) and `score_ids` (token ids) score any sequences.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DynamicCache,
)
from transformers.utils import logging as hf_logging

from rlpractice.algorithm.preference import bradley_terry_loss, pair_accuracy, preference_loss
from rlpractice.checkpoint import save_state
from rlpractice.errors import UserError
from rlpractice.learner import autocast, microbatches, place, use_bf16
from rlpractice.learner_group import LocalLearner
from rlpractice.stages.lm_training import resume_point, start_stage
from rlpractice.textbook.preferences import PreferencePair, load_pairs

STAGE = "rm"


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
    pad = model.config.pad_token_id
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s)
        attn[row, : len(s)] = 1
    with autocast(model.device, bf16):
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


def run_rm(cfg: DictConfig, start: str | Path, train: list[PreferencePair], heldout: list[PreferencePair],
           tracker, seed: int, steps_dir: Path | None = None):
    """Train a reward model from `start` (the SFT checkpoint folder, or any causal LM or reward model folder)
    for `cfg.rm.steps` steps; with resume=true, from the step after the last checkpoint in `steps_dir`.
    Returns (model, tokenizer, the final held-out metrics)."""
    s = cfg.rm
    if not train or not heldout:
        raise UserError(f"the rm stage needs training and held-out pairs ({len(train)} and {len(heldout)} given)")
    resume_from = resume_point(cfg, steps_dir)
    torch.manual_seed(seed)  # the fresh head's initial weights
    model, tokenizer = load_reward_model(resume_from or start)
    place(model, cfg.learner.device)
    bf16 = use_bf16(cfg.learner.bf16, model.device)
    data = [encode_pair(tokenizer, p, s.margin) for p in train]
    held = [encode_pair(tokenizer, p, s.margin) for p in heldout]
    learner = LocalLearner(model)  # one process: the reward model is small beside the policy
    rng, first, log = start_stage(STAGE, s, learner, tracker, seed, resume_from)
    optimizer, schedule = learner.optimizer, learner.schedule
    final = None
    bar = tqdm(range(first, s.steps + 1), desc=STAGE, unit="step", dynamic_ncols=True, initial=first - 1,
               total=s.steps)
    for step in bar:
        batch = rng.sample(data, min(s.batch_size, len(data)))
        metrics = preference_step(model, optimizer, batch, s.token_budget, s.grad_clip, s.center_coef, bf16)
        learner.schedule_step()
        metrics["lr"] = learner.lr()
        if (s.eval_every and step % s.eval_every == 0) or step == s.steps:
            final = evaluate_pairs(model, held, s.token_budget, bf16)
            metrics |= {f"heldout/{k}": v for k, v in final.items()}
            bar.set_postfix(heldout_acc=f"{final['accuracy']:.3f}")
        logged = step % s.log_every == 0 or step == s.steps or "heldout/accuracy" in metrics
        # not after the last step: the caller saves the stage's final model right away
        if steps_dir is not None and s.checkpoint_every and step % s.checkpoint_every == 0 and step < s.steps:
            save_state(steps_dir, step, model, tokenizer, optimizer, {"metrics": metrics if logged else None},
                       s.keep_checkpoints, schedule, rng)
        if logged:
            log(STAGE, step, metrics)
    if final is None:  # nothing left to train (resumed after the last step, or steps=0)
        final = evaluate_pairs(model, held, s.token_budget, bf16)
    print(f"[{STAGE}] held-out pair accuracy {final['accuracy']:.3f} on {len(held)} pairs")
    return model, tokenizer, final


@torch.no_grad()
def score_shared(model, prompts: list[list[int]], owner: list[int], completions: list[list[int]], batch_tokens: int,
                 bf16: bool = False) -> list[float]:
    """Scores of prompts[owner[i]] + completions[i], as `score_ids` gives them, with each distinct prompt of a
    micro-batch run once: RL's samples come in groups that continue the same prompt, so this is about half the
    tokens (the learner does the same: learner.shared_prompt_logprobs). The budget counts completion tokens."""
    if not completions:
        return []
    if min(map(len, completions)) == 0 or not hasattr(model, "score"):  # nothing to continue, or an unknown head
        return score_ids(model, [prompts[o] + c for o, c in zip(owner, completions, strict=True)], batch_tokens, bf16)
    model.eval()
    out = [0.0] * len(completions)
    for idx in microbatches([len(c) for c in completions], batch_tokens):
        rows: dict[int, int] = {}  # prompt index -> its row in this micro-batch
        mine = [rows.setdefault(owner[i], len(rows)) for i in idx]
        values = _shared_forward(model, [prompts[o] for o in rows], mine, [completions[i] for i in idx], bf16)
        for i, value in zip(idx, values.tolist(), strict=True):
            out[i] = value
    return out


def _shared_forward(model, prompts: list[list[int]], owner: list[int], comps: list[list[int]],
                    bf16: bool) -> torch.Tensor:
    """One micro-batch: the prompts fill a KV cache, its rows are repeated per completion, the completions run
    on top; the head reads each completion's last token. [len(comps)] in fp32."""
    pad, device = model.config.pad_token_id, model.device
    prompt_width, comp_width = max(map(len, prompts)), max(map(len, comps))
    prompt_ids = torch.full((len(prompts), prompt_width), pad, dtype=torch.long)
    for row, p in enumerate(prompts):
        prompt_ids[row, : len(p)] = torch.tensor(p)
    comp_ids = torch.full((len(comps), comp_width), pad, dtype=torch.long)
    attn = torch.zeros((len(comps), prompt_width + comp_width), dtype=torch.long)  # own prompt, then own tokens
    for row, (o, c) in enumerate(zip(owner, comps, strict=True)):
        comp_ids[row, : len(c)] = torch.tensor(c)
        attn[row, : len(prompts[o])] = 1
        attn[row, prompt_width : prompt_width + len(c)] = 1
    starts = torch.tensor([len(prompts[o]) for o in owner]).unsqueeze(1)
    body = model.base_model
    with autocast(device, bf16):
        # right-padded prompts need no mask: causal attention keeps real tokens off the pads after them
        cache = body(input_ids=prompt_ids.to(device), use_cache=True, past_key_values=DynamicCache()).past_key_values
        cache.batch_select_indices(torch.tensor(owner, device=device))
        hidden = body(input_ids=comp_ids.to(device), attention_mask=attn.to(device),
                      position_ids=(starts + torch.arange(comp_width)).to(device), past_key_values=cache,
                      use_cache=True).last_hidden_state
        last = hidden[torch.arange(len(comps)), torch.tensor([len(c) for c in comps]) - 1]
        return model.score(last)[:, 0].float()


def reward_model_stage(cfg: DictConfig, ckpt: Path, tracker) -> Path | None:
    """The reward model RL will use (`reward.model`): None; the folder of the user's own; or, with `train`, the
    one stage rm trains from the SFT checkpoint (checkpoints/rm/; a stopped stage continues from its step
    checkpoints in checkpoints/rm_steps/ with resume=true, a finished one is not redone)."""
    if not cfg.reward.model:
        return None
    if cfg.reward.model != "train":
        return Path(cfg.reward.model)
    out = ckpt / STAGE
    if cfg.resume and (out / "config.json").is_file():
        print(f"[{STAGE}] done before: {out}")
        return out
    train, heldout = load_pairs(cfg.rm, cfg.seed)
    print(f"[{STAGE}] {len(train)} training and {len(heldout)} held-out preference pairs ({cfg.rm.pairs})", flush=True)
    model, tokenizer, _ = run_rm(cfg, ckpt / "sft", train, heldout, tracker, cfg.seed, ckpt / f"{STAGE}_steps")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(ckpt / f"{STAGE}_steps", ignore_errors=True)  # the final checkpoint replaces them
    return out
