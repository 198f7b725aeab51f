"""Stage 2, worked problems -> SFT: imitate the expert's solution; loss on solution tokens only."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rlpractice import model as policy
from rlpractice.learner import Sequence, place, use_bf16
from rlpractice.stages.lm_training import resume_point, train_lm
from rlpractice.textbook.problems import Problem


def worked_sequence(problem: Problem, tokenizer) -> Sequence:
    """prompt (not learned) + solution + EOS (learned): the model learns to write and to stop."""
    prompt = tokenizer(problem.prompt)["input_ids"]
    solution = tokenizer(problem.solution)["input_ids"] + [tokenizer.eos_token_id]
    return Sequence(prompt + solution, [0] * len(prompt) + [1] * len(solution))


def run_sft(cfg: DictConfig, model, tokenizer, worked: list[Problem], tracker, seed: int,
            steps_dir: Path | None = None):
    """Returns the trained model: `model`, or on resume the one loaded from the stage's last checkpoint."""
    resume_from = resume_point(cfg, steps_dir)
    device = str(model.device)
    if resume_from is not None:
        model = policy.load(resume_from)[0]
    place(model, device)  # both ways the same attention implementation (bitwise-equal resumes)
    data = [worked_sequence(p, tokenizer) for p in worked]
    train_lm("sft", cfg.sft, model, tokenizer, data, tracker, seed, steps_dir, resume_from,
             use_bf16(cfg.learner.bf16, model.device))
    return model
