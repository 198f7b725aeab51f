"""Check and retry: the student checks the answer at the back of the book and, when it is wrong, tries again.

After each attempt (a turn ending at end-of-text) the verifier grades the final answer. Right: the episode ends
with reward 1 for that turn. Wrong: the model reads the verifier's reason, with the gold answer taken out of it,
and the first line of the attempt that went wrong, as a teacher marks it (`feedback`): a number the question
never gave, or a false step, fractions included; then it answers again, up to `max_attempts`. With `env.discount`
< 1 a later success is worth less than a first one (rlpractice/environments/base.py `episode_reward`), so practice
still pays for getting it right the first time. With `env.repeat_penalty` a wrong attempt that gives an answer the
checker already marked wrong earns minus that: retrying should use the check, not draw again from the same beliefs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from rlpractice.environments.base import Step
from rlpractice.grading.extract import extract_answer, plain_number
from rlpractice.grading.registry import Grade, is_failure
from rlpractice.textbook.problems import Problem

GENERIC = "that is not the answer"  # said when the verifier's reason cannot be told without the gold answer


def observation(feedback: str) -> str:
    """The text after a wrong attempt (its end-of-text): what the checker says, then a fresh 'Solution:'."""
    return f"\nCheck: {feedback}. Try again.\nSolution:"


def feedback(reason: str, answer: str, attempt: str = "", question: str = "") -> str:
    """The verifier's `reason` for a wrong answer, never giving the gold `answer` away: each mention of it reads
    'the answer' ('8 != 7' -> '8 != the answer'); a reason that still holds the gold's value in another form
    ('0.5' for '1/2') becomes GENERIC. A verifier failure ('error: ...', 'timeout ...') becomes GENERIC too. Then
    the attempt's first mistake (`first_mistake`), unless it holds the gold's value: '8 != the answer; 3 + 4 = 8
    is wrong'."""
    text = GENERIC
    if not is_failure(reason):
        text = re.sub(rf"(?<![\w.]){re.escape(answer.strip())}(?![\w.]|/\d)", "the answer", reason) \
            if answer.strip() else reason
        text = GENERIC if gives_away(text, answer) else text.strip().rstrip(".") or GENERIC
    mark = first_mistake(attempt, question)
    return f"{text}; {mark}" if mark and not gives_away(mark, answer) else text


def gives_away(text: str, answer: str) -> bool:
    """Whether `text` holds a number equal to the gold answer's value."""
    gold = plain_number(answer)
    return gold is not None and any(plain_number(n) == gold for n in re.findall(r"-?\d+(?:[./]\d+)?", text))


NUMBER = r"\d+(?:/\d+)?"  # a whole number or a fraction written 'a/b' (a division is written 'a / b')
# a step: 'a op b = c' or a rewriting 'a = c' ('1 = 7/7', '6/8 = 3/4'), on whole numbers and fractions
STEP = re.compile(rf"(?<![\d/])({NUMBER})(?: ([-+*/]) ({NUMBER}))? = ({NUMBER})(?![\d/])")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a / b if b else None}


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text)
    except ZeroDivisionError:  # 'a/0'
        return None


def step_holds(m: re.Match) -> bool:
    """Whether a STEP match is true: its left side's value equals its right side's."""
    a, b, c = _number(m[1]), _number(m[3]) if m[3] else None, _number(m[4])
    if a is None or c is None or (m[2] and b is None):
        return False
    return (_OPS[m[2]](a, b) if m[2] else a) == c


def first_mistake(attempt: str, question: str = "") -> str | None:
    """The first line of `attempt` where it went wrong, in the teacher's words: a number it works with that is
    neither in `question` nor a result of an earlier step ('5/9 is not in the question'), or a false step
    ('26 - 16 = 16 is wrong'). None when every step holds (or the attempt shows none). Without `question`,
    only false steps are marked."""
    known = {"1"} | set(re.findall(NUMBER, question)) | set(re.findall(r"\d+", question))
    for m in STEP.finditer(attempt):
        for number in (m[1], m[3]) if question else ():
            if number is not None and number not in known:
                return f"{number} is not in the question"
        if not step_holds(m):
            return f"{m[0]} is wrong"
        known.add(m[4])
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
        return Step(observation(feedback(grade.reason, self.problem.answer, turn, self.problem.question)),
                    reward=reward, info=info)
