"""Check and retry in the textbook: worked problems that show a wrong first attempt, the check, and a corrected one.

The retry environment (rlpractice/environments/retry.py) answers a wrong final answer with the verifier's reason
and a fresh 'Solution:'. A model that never saw that exchange does not know what to write after it, so SFT shows
it: for a share of the worked problems the book prints first a wrong attempt of a kind a student really writes
(preferences.py makes the same ones for the reward model)
    leap     no work, a wrong number after "Answer:" (" Answer: 23")
    slip     the steps with one arithmetic slip, carried through to a wrong answer
    misread  a number of the question read as one it does not hold, carried through (whole-number steps only)
then the check's words, exactly as the environment would say them (`check_text`), then the solution with every
step shown, also where the book otherwise prints only the answer: the retry should show the work a leap skipped.

SFT learns only the corrected solution (stages/sft.py `retry_sequence`): never the mistake, and never the check,
which the environment writes. The exposition is left as it was for the same reason: pretraining learns every
token, and would learn the slips' wrong arithmetic.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from rlpractice.environments.retry import STEP, feedback, observation
from rlpractice.textbook.preferences import apply_step, slipped, wrong_number
from rlpractice.textbook.problems import Problem, Textbook, format_solution
from rlpractice.verifiers.math import math_equal

KINDS = ("leap", "slip", "misread")
# mostly mistakes in shown steps: practice soon teaches the model to show its steps, and then its mistakes are there
KIND_WEIGHTS = (1, 2, 1)


def misread(steps: list[str], question: str, r: random.Random) -> list[str] | None:
    """The steps with one number taken from `question` read as another that the question does not hold, that
    step and every later one redone with it; None when a step is not a whole-number operation or a redone one
    does not come out whole."""
    parsed = [STEP.fullmatch(s.rstrip(".")) for s in steps]
    if not all(m and m[2] and "/" not in m[1] + m[3] for m in parsed):
        return None
    given = set(re.findall(r"\d+", question))
    spots = [(i, j) for i, m in enumerate(parsed) for j in (1, 3) if m[j] in given]
    if not spots:
        return None
    at, side = r.choice(spots)
    read = next((n for n in (wrong_number(parsed[at][side], r) for _ in range(10)) if n not in given), None)
    if read is None:
        return None
    out, changed = list(steps[:at]), {}  # old result -> redone result, for the later steps
    for i in range(at, len(steps)):
        m = parsed[i]
        a = read if (i, 1) == (at, side) else changed.get(m[1], m[1])
        b = read if (i, 3) == (at, side) else changed.get(m[3], m[3])
        value = apply_step(int(a), m[2], int(b))
        if value is None:
            return None
        changed[m[4]] = str(value)
        out.append(f"{a} {m[2]} {b} = {value}.")
    return out


def wrong_attempt(problem: Problem, kind: str, r: random.Random) -> str:
    """A first attempt at `problem` of `kind` (KINDS) whose final answer is not `problem.answer` (a misread that
    cannot be made is a slip)."""
    steps, answer = list(problem.steps), problem.answer
    if kind == "leap":
        return format_solution([], wrong_number(answer, r))
    wrong = (misread(steps, problem.question, r) if kind == "misread" else None) or slipped(steps, answer, r)
    return format_solution(wrong, wrong[-1].rsplit(" = ", 1)[1].rstrip("."))  # the last result, carried through


def retry_example(problem: Problem, r: random.Random) -> Problem | None:
    """`problem` with a wrong first attempt and its step-by-step solution; None when it has no steps to show, or
    when the math verifier does not grade the attempt wrong and the solution right (SFT would teach a check that
    the environment never gives)."""
    if not problem.steps:
        return None
    attempt = wrong_attempt(problem, r.choices(KINDS, KIND_WEIGHTS)[0], r)
    solution = format_solution(list(problem.steps), problem.answer)
    if math_equal(attempt, problem.answer).reward != 0.0 or math_equal(solution, problem.answer).reward != 1.0:
        return None
    return replace(problem, first_attempt=attempt, solution=solution)


def with_retries(book: Textbook, share: float, seed: int) -> Textbook:
    """`book` with about `share` of its worked problems shown a second time, as check-and-retry examples
    (`retry_example`), after all of them as they are: the first attempt at every problem is still taught directly.
    The other parts, and worked problems without steps (the countdown textbook's, a dataset's), are unchanged."""
    r = random.Random(f"retries {seed}")  # a stream of its own: the textbook's use seed * 4 + k
    retries = [retry_example(p, r) if r.random() < share else None for p in book.worked]
    return replace(book, worked=list(book.worked) + [p for p in retries if p is not None])


def check_text(problem: Problem) -> str:
    """What the retry environment appends after `problem.first_attempt` (and its end-of-text): the math
    verifier's reason, without the gold answer, the attempt's first mistake, and a fresh 'Solution:'."""
    return observation(feedback(math_equal(problem.first_attempt, problem.answer).reason, problem.answer,
                                problem.first_attempt, problem.question))
