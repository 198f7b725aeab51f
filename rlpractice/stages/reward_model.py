"""Stage rm, preference pairs -> a reward model (reward/model.py): what a verifier is for answers no checker can
grade. Each step draws a batch of (chosen, rejected) pairs and takes a Bradley-Terry step on them; held-out pair
accuracy is logged every `rm.eval_every` steps. A stopped stage continues with resume=true from its last step
checkpoint (checkpoint.py), as pretraining and SFT do; the result is an HF folder that
`AutoModelForSequenceClassification.from_pretrained` loads anywhere.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.learner.device import place, use_bf16
from rlpractice.learner.local import LocalLearner
from rlpractice.reward.model import STAGE, encode_pair, evaluate_pairs, load_reward_model, preference_step
from rlpractice.stages.lm_training import resume_point, train_steps
from rlpractice.textbook.preferences import PreferencePair, load_pairs


def run_rm(cfg: DictConfig, start: str | Path, train: list[PreferencePair], heldout: list[PreferencePair],
           tracker, steps_dir: Path | None = None):
    """Train a reward model from `start` (the SFT checkpoint folder, or any causal LM or reward model folder)
    for `cfg.rm.steps` steps; with resume=true, from the step after the last checkpoint in `steps_dir`.
    Returns (model, tokenizer, the final held-out metrics)."""
    s = cfg.rm
    if not train or not heldout:
        raise UserError(f"the rm stage needs training and held-out pairs ({len(train)} and {len(heldout)} given)")
    resume_from = resume_point(cfg, steps_dir)
    torch.manual_seed(cfg.seed)  # the fresh head's initial weights
    model, tokenizer = load_reward_model(resume_from or start)
    place(model, cfg.learner.device)
    bf16 = use_bf16(cfg.learner.bf16, model.device)
    data = [encode_pair(tokenizer, p, s.margin) for p in train]
    held = [encode_pair(tokenizer, p, s.margin) for p in heldout]
    learner, final = LocalLearner(model), None  # one process: the reward model is small beside the policy

    def step(rng: random.Random, n: int) -> dict:
        nonlocal final
        batch = rng.sample(data, min(s.batch_size, len(data)))
        metrics = preference_step(model, learner.optimizer, batch, s.token_budget, s.grad_clip, s.center_coef, bf16)
        if (s.eval_every and n % s.eval_every == 0) or n == s.steps:
            final = evaluate_pairs(model, held, s.token_budget, bf16)
            metrics |= {f"heldout/{k}": v for k, v in final.items()}
        return metrics

    train_steps(STAGE, cfg, learner, tokenizer, tracker, steps_dir, resume_from, step)
    if final is None:  # nothing left to train (resumed after the last step, or steps=0)
        final = evaluate_pairs(model, held, s.token_budget, bf16)
    print(f"[{STAGE}] held-out pair accuracy {final['accuracy']:.3f} on {len(held)} pairs")
    return model, tokenizer, final


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
    model, tokenizer, _ = run_rm(cfg, ckpt / "sft", train, heldout, tracker, ckpt / f"{STAGE}_steps")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(ckpt / f"{STAGE}_steps", ignore_errors=True)  # the final checkpoint replaces them
    return out
