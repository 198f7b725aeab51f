"""Stage 2, worked problems -> SFT: imitate the expert's solution; loss on solution tokens only."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from rlpractice import model as policy
from rlpractice.environments.loop import encode_result
from rlpractice.learner.device import place
from rlpractice.learner.forward import Sequence
from rlpractice.stages.lm_training import resume_point, train_lm
from rlpractice.textbook.problems import Problem
from rlpractice.textbook.retry_textbook import check_text
from rlpractice.tools.runner import ToolRunner
from rlpractice.tools.worked import solution_ids


def worked_sequence(problem: Problem, tokenizer, tools: ToolRunner | None = None) -> Sequence:
    """prompt (not learned) + solution + EOS (learned): the model learns to write and to stop. With `tools`, the
    solution's calls are cut and encoded as a rollout appends them, and the tools' results are not learned. A
    problem with a `first_attempt` is a check-and-retry episode (`retry_sequence`; an environment and tools never
    run together)."""
    if problem.first_attempt:
        return retry_sequence(problem, tokenizer)
    prompt = tokenizer(problem.prompt)["input_ids"]
    if tools is None:
        solution = tokenizer(problem.solution)["input_ids"] + [tokenizer.eos_token_id]
        return Sequence(prompt + solution, [0] * len(prompt) + [1] * len(solution))
    ids, mask = solution_ids(problem.solution, tokenizer, tools)
    return Sequence(prompt + ids + [tokenizer.eos_token_id], [0] * len(prompt) + mask + [1])


def retry_sequence(problem: Problem, tokenizer) -> Sequence:
    """The ids of a check-and-retry episode as the rollout builds them: prompt, first attempt + EOS, the check
    encoded once on its own (the environment's observation), solution + EOS. Only the solution and its EOS are
    learned: the mistake never is, and the check is the environment's to write. The pieces after the prompt are
    encoded without special tokens, as the engine never samples a BOS mid-episode."""
    prompt = tokenizer(problem.prompt)["input_ids"]
    eos = [tokenizer.eos_token_id]
    unlearned = (prompt + encode_result(tokenizer, problem.first_attempt) + eos
                 + encode_result(tokenizer, check_text(problem)))
    solution = encode_result(tokenizer, problem.solution) + eos
    return Sequence(unlearned + solution, [0] * len(unlearned) + [1] * len(solution))


def run_sft(cfg: DictConfig, model, tokenizer, worked: list[Problem], tracker, steps_dir: Path | None = None,
            tools: ToolRunner | None = None):
    """Returns the trained model: `model`, or on resume the one loaded from the stage's last checkpoint.
    `tools`: the run's tools, when worked solutions show calls (their results are not learned)."""
    resume_from = resume_point(cfg, steps_dir)
    device = str(model.device)
    if resume_from is not None:
        model = policy.load(resume_from)[0]
    place(model, device)  # both ways the same attention implementation (bitwise-equal resumes)
    data = [worked_sequence(p, tokenizer, tools) for p in worked]
    return train_lm("sft", cfg, model, tokenizer, data, tracker, steps_dir, resume_from)
