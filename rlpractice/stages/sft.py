"""Stage 2, worked problems -> SFT: imitate the expert's solution; loss on solution tokens only."""

from __future__ import annotations

import random

import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from rlpractice.learner import Sequence, lm_step
from rlpractice.textbook.problems import Problem


def worked_sequence(problem: Problem, tokenizer) -> Sequence:
    """prompt (not learned) + solution + EOS (learned): the model learns to write and to stop."""
    prompt = tokenizer(problem.prompt)["input_ids"]
    solution = tokenizer(problem.solution)["input_ids"] + [tokenizer.eos_token_id]
    return Sequence(prompt + solution, [0] * len(prompt) + [1] * len(solution))


def run_sft(cfg: DictConfig, model, tokenizer, worked: list[Problem], tracker, seed: int):
    s = cfg.sft
    data = [worked_sequence(p, tokenizer) for p in worked]
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.95))
    schedule = get_cosine_schedule_with_warmup(optimizer, s.warmup_steps, s.steps)
    rng = random.Random(seed)
    bar = tqdm(range(1, s.steps + 1), desc="sft", unit="step", dynamic_ncols=True)
    for step in bar:
        batch = rng.sample(data, min(s.batch_size, len(data)))
        loss = lm_step(model, optimizer, batch, tokenizer.pad_token_id, s.token_budget, s.grad_clip)
        schedule.step()
        bar.set_postfix(loss=f"{loss:.3f}")
        if step % s.log_every == 0 or step == s.steps:
            tracker.log("sft", step, {"loss": loss, "lr": schedule.get_last_lr()[0]})
    return model
