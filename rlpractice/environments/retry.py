"""Check and retry: the student checks the answer at the back of the book and, when it is wrong, tries again.

After each attempt (a turn ending at end-of-text) the verifier grades the final answer. Right: the episode ends
with reward 1 for that turn. Wrong: the model reads the verifier's reason, with the gold answer taken out of it,
and the first arithmetic step of the attempt that is false, as a teacher marks the line where it went wrong
(`feedback`), and answers again, up to `max_attempts`. With `env.discount` < 1 a later success is worth less
than a first one (rlpractice/environments/base.py `episode_reward`), so practice still pays for getting it right
the first time. With `env.repeat_penalty` a wrong attempt that gives an answer the checker already marked wrong
earns minus that: retrying should use the check, not draw again from the same beliefs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from rlpractice.environments.base import Step
from rlpractice.grading.extract import extract_answer, plain_number
from rlpractice.grading.registry import Grade, is_failure
from rlpractice.textbook.problems import Problem
from rlpractice.textbook.tool_textbook import ARITHMETIC_STEP

GENERIC = "that is not the answer"  # said when the verifier's reason cannot be told without the gold answer


def observation(feedback: str) -> str:
    """The text after a wrong attempt (its end-of-text): what the checker says, then a fresh 'Solution:'."""
    return f"\nCheck: {feedback}. Try again.\nSolution:"


def feedback(reason: str, answer: str, attempt: str = "") -> str:
    """The verifier's `reason` for a wrong answer, never giving the gold `answer` away: each mention of it reads
    'the answer' ('8 != 7' -> '8 != the answer'); a reason that still holds the gold's value in another form
    ('0.5' for '1/2') becomes GENERIC. A verifier failure ('error: ...', 'timeout ...') becomes GENERIC too. Then
    the attempt's first false step, unless it holds the gold's value: '8 != the answer; 3 + 4 = 8 is wrong'."""
    text = GENERIC
    if not is_failure(reason):
        text = re.sub(rf"(?<![\w.]){re.escape(answer.strip())}(?![\w.]|/\d)", "the answer", reason) \
            if answer.strip() else reason
        text = GENERIC if gives_away(text, answer) else text.strip().rstrip(".") or GENERIC
    step = wrong_step(attempt)
    return f"{text}; {step} is wrong" if step and not gives_away(step, answer) else text


def gives_away(text: str, answer: str) -> bool:
    """Whether `text` holds a number equal to the gold answer's value."""
    gold = plain_number(answer)
    return gold is not None and any(plain_number(n) == gold for n in re.findall(r"-?\d+(?:[./]\d+)?", text))


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: Fraction(a, b) if b else None}


def wrong_step(attempt: str) -> str | None:
    """The first whole-number step 'a op b = c' of `attempt` that is false ('26 - 16 = 16'), or None."""
    for m in ARITHMETIC_STEP.finditer(attempt):
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        if _OPS[op](a, b) != c:
            return m[0]
    return None


class CheckAndRetry:
    """One episode of check and retry. `grade(completion, answer, columns) -> Grade`: the run's verifier."""

    stop_strings = ()
    gives_reward = True

    def __init__(self, grade: Callable[[str, str, dict], Grade], max_attempts: int = 2, repeat_penalty: float = 0.0):
        self.grade, self.max_attempts, self.repeat_penalty = grade, max_attempts, repeat_penalty

    def reset(self, problem: Problem) -> None:
        self.problem, self.attempts, self.marked_wrong = problem, 0, set()
        return None

    def step(self, turn: str) -> Step:
        self.attempts += 1
        grade = self.grade(turn, self.problem.answer, self.problem.columns)
        info = {"reason": grade.reason, "attempts": 1}
        reward, answer = grade.reward, extract_answer(turn)
        if reward < 1.0 and answer is not None:
            if answer in self.marked_wrong:  # the checker already said this one is wrong: the feedback went unused
                reward -= self.repeat_penalty
                info["repeated"] = 1
            self.marked_wrong.add(answer)
        if grade.reward >= 1.0 or self.attempts >= self.max_attempts:
            return Step(reward=reward, done=True, info=info)
        return Step(observation(feedback(grade.reason, self.problem.answer, turn)), reward=reward, info=info)
