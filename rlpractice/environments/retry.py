"""Check and retry: the student checks the answer at the back of the book and, when it is wrong, tries again.

After each attempt (a turn ending at end-of-text) the verifier grades the final answer. Right: the episode ends
with reward 1 for that turn. Wrong: the model reads the verifier's reason, with the gold answer taken out of it
(`feedback`), and answers again, up to `max_attempts`. With `env.discount` < 1 a later success is worth less
than a first one (rlpractice/environments/base.py `episode_reward`), so practice still pays for getting it right
the first time.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rlpractice.environments.base import Step
from rlpractice.grading.extract import plain_number
from rlpractice.grading.registry import Grade, is_failure
from rlpractice.textbook.problems import Problem

GENERIC = "that is not the answer"  # said when the verifier's reason cannot be told without the gold answer


def observation(feedback: str) -> str:
    """The text after a wrong attempt (its end-of-text): what the checker says, then a fresh 'Solution:'."""
    return f"\nCheck: {feedback}. Try again.\nSolution:"


def feedback(reason: str, answer: str) -> str:
    """The verifier's `reason` for a wrong answer, never giving the gold `answer` away: each mention of it reads
    'the answer' ('8 != 7' -> '8 != the answer'); a reason that still holds the gold's value in another form
    ('0.5' for '1/2') becomes GENERIC. A verifier failure ('error: ...', 'timeout ...') becomes GENERIC too."""
    if is_failure(reason):
        return GENERIC
    text = re.sub(rf"(?<![\w.]){re.escape(answer.strip())}(?![\w.]|/\d)", "the answer", reason) if answer.strip() \
        else reason
    gold = plain_number(answer)
    if gold is not None and any(plain_number(n) == gold for n in re.findall(r"-?\d+(?:[./]\d+)?", text)):
        return GENERIC
    return text.strip().rstrip(".") or GENERIC


class CheckAndRetry:
    """One episode of check and retry. `grade(completion, answer, columns) -> Grade`: the run's verifier."""

    stop_strings = ()
    gives_reward = True

    def __init__(self, grade: Callable[[str, str, dict], Grade], max_attempts: int = 2):
        self.grade, self.max_attempts = grade, max_attempts

    def reset(self, problem: Problem) -> None:
        self.problem, self.attempts = problem, 0
        return None

    def step(self, turn: str) -> Step:
        self.attempts += 1
        grade = self.grade(turn, self.problem.answer, self.problem.columns)
        info = {"reason": grade.reason, "attempts": 1}
        if grade.reward >= 1.0 or self.attempts >= self.max_attempts:
            return Step(reward=grade.reward, done=True, info=info)
        return Step(observation(feedback(grade.reason, self.problem.answer)), reward=grade.reward, info=info)
