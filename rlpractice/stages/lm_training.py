"""The loop pretraining, SFT and stage rm share: draw a batch, take one step, log, checkpoint now and then.

A stage stopped part-way continues, with resume=true, from its last checkpoint (checkpoint.py): same weights,
optimizer, LR schedule, RNG and data position, so it runs exactly the steps it would have run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from rlpractice.checkpoint import latest_state, resume, save_state
from rlpractice.learner.device import lm_bf16
from rlpractice.learner.forward import Sequence
from rlpractice.learner.ranks import make_learner


def resume_point(cfg: DictConfig, steps_dir: Path | None) -> Path | None:
    """The stage's newest checkpoint when resuming (the model and tokenizer load from it), else None."""
    return latest_state(steps_dir) if cfg.resume and steps_dir is not None else None


def train_lm(stage: str, cfg: DictConfig, model, tokenizer, data: list[Sequence], tracker, steps_dir: Path | None,
             resume_from: Path | None):
    """Next-token steps on `data` where the run's learner section says the policy learns (`train_steps`; `model`
    already holds the weights of `resume_from`). Returns the trained model."""
    s, bf16, learner = cfg[stage], lm_bf16(cfg.learner), make_learner(model, cfg.learner, cfg.cluster)

    def step(rng: random.Random, n: int) -> dict:
        batch = rng.sample(data, min(s.batch_size, len(data)))
        return {"loss": learner.lm_step(batch, pad_id=tokenizer.pad_token_id, token_budget=s.token_budget,
                                        grad_clip=s.grad_clip, bf16=bf16)}

    try:
        train_steps(stage, cfg, learner, tokenizer, tracker, steps_dir, resume_from, step)
        return learner.full_model()
    finally:
        learner.close()


def train_steps(stage: str, cfg: DictConfig, learner, tokenizer, tracker, steps_dir: Path | None,
                resume_from: Path | None, step: Callable[[random.Random, int], dict]) -> None:
    """Steps 1..cfg[stage].steps of `learner` (from the step after `resume_from`): `step(rng, n)` draws a batch with
    `rng` (its state is the data position) and learns from it, returning its metrics; then the LR schedule steps.
    Metrics are logged every log_every steps, at the last, and when `step` evaluated (heldout/accuracy); a checkpoint
    every checkpoint_every steps, but not after the last: the caller saves the stage's final model right away."""
    s = cfg[stage]
    learner.start(lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.95), warmup_steps=s.warmup_steps,
                  total_steps=s.steps)  # AdamW, its learning rate warmed up linearly, then decayed on a cosine
    rng = random.Random(cfg.seed)  # draws the batches: its state is the data position
    first, log = 1, tracker.log
    if resume_from is not None:
        first = resume(stage, resume_from, learner, tracker, rng)["step"] + 1
        # steps after the checkpoint may have been logged before the stop: they are redone, not logged twice
        log = tracker.log_once
    bar = tqdm(range(first, s.steps + 1), desc=stage, unit="step", dynamic_ncols=True, initial=first - 1,
               total=s.steps)
    for n in bar:
        metrics = step(rng, n)
        learner.schedule_step()
        metrics["lr"] = learner.lr()
        bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items() if k in ("loss", "heldout/accuracy")})
        logged = n % s.log_every == 0 or n == s.steps or "heldout/accuracy" in metrics
        if steps_dir is not None and s.checkpoint_every and n % s.checkpoint_every == 0 and n < s.steps:
            save_state(steps_dir, n, learner, tokenizer, {"metrics": metrics if logged else None}, s.keep_checkpoints,
                       rng)
        if logged:
            log(stage, n, metrics)
