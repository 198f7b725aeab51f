"""The loop pretraining and SFT share: draw a batch, take one next-token step, log, checkpoint now and then.

A stage stopped part-way continues, with resume=true, from its last checkpoint (checkpoint.py): same weights,
optimizer, LR schedule, RNG and data position, so it runs exactly the steps it would have run.
"""

from __future__ import annotations

import random
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from rlpractice.checkpoint import latest_state, load_state, save_state
from rlpractice.learner.forward import Sequence
from rlpractice.learner.local import LocalLearner, make_learner


def resume_point(cfg: DictConfig, steps_dir: Path | None) -> Path | None:
    """The stage's newest checkpoint when resuming (the model and tokenizer load from it), else None."""
    return latest_state(steps_dir) if cfg.resume and steps_dir is not None else None


def start_stage(stage: str, s: DictConfig, learner, tracker, seed: int, resume_from: Path | None):
    """Starts `learner`'s AdamW with linear warmup then cosine decay, and the batch-drawing random.Random (its state
    is the data position), restored from `resume_from` when given. Returns (rng, first step, log), where `log` logs
    a step once: steps redone after the checkpoint may have been logged before the stop."""
    learner.start(lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.95), warmup_steps=s.warmup_steps,
                  total_steps=s.steps)
    rng = random.Random(seed)  # draws the batches: its state is the data position
    first, log = 1, tracker.log
    if resume_from is not None:
        state = load_state(resume_from, learner, rng)
        first = state["step"] + 1
        if state["metrics"]:  # in case the run died between checkpointing and logging this step
            tracker.log_once(stage, state["step"], state["metrics"])
        # steps after the checkpoint may have been logged before the stop: they are redone, not logged twice
        log = tracker.log_once
        tracker.log("resume", state["step"], {"from": str(resume_from)})
        print(f"[{stage}] resuming after step {state['step']} from {resume_from}")
    return rng, first, log


def train_lm(stage: str, s: DictConfig, model, tokenizer, data: list[Sequence], tracker, seed: int,
             steps_dir: Path | None, resume_from: Path | None, bf16: bool = False, cfg: DictConfig | None = None):
    """Steps 1..s.steps on `data` (or from the step after `resume_from`, whose weights `model` already holds);
    `bf16`: forwards in bf16 autocast. `cfg`: the run's config, whose learner section says where the policy learns
    (None: in this process). Returns the trained model."""
    learner = LocalLearner(model) if cfg is None else make_learner(model, cfg.learner, cfg.cluster)
    try:
        _train(stage, s, learner, tokenizer, data, tracker, seed, steps_dir, resume_from, bf16)
        return learner.full_model()
    finally:
        learner.close()


def _train(stage: str, s: DictConfig, learner, tokenizer, data: list[Sequence], tracker, seed: int,
           steps_dir: Path | None, resume_from: Path | None, bf16: bool) -> None:
    rng, first, log = start_stage(stage, s, learner, tracker, seed, resume_from)
    bar = tqdm(range(first, s.steps + 1), desc=stage, unit="step", dynamic_ncols=True, initial=first - 1,
               total=s.steps)
    for step in bar:
        batch = rng.sample(data, min(s.batch_size, len(data)))
        loss = learner.lm_step(batch, pad_id=tokenizer.pad_token_id, token_budget=s.token_budget,
                               grad_clip=s.grad_clip, bf16=bf16)
        learner.schedule_step()
        bar.set_postfix(loss=f"{loss:.3f}")
        logged = step % s.log_every == 0 or step == s.steps
        metrics = {"loss": loss, "lr": learner.lr()} if logged else None
        # not after the last step: the pipeline writes the stage's final checkpoint right away
        if steps_dir is not None and s.checkpoint_every and step % s.checkpoint_every == 0 and step < s.steps:
            save_state(steps_dir, step, learner, tokenizer, {"metrics": metrics}, s.keep_checkpoints, rng)
        if metrics:
            log(stage, step, metrics)
