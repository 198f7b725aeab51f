"""Countdown: does the final answer use each given number exactly once and make the target?

The answer is an expression like '5*3+7'. It is model output, so it is never passed to eval: a tiny
parser accepts only whole numbers, + - * /, brackets and spaces, and computes with exact fractions
(8/(3-8/3) makes 24). It needs the dataset columns `numbers` and `target`, not the gold text.
"""

import re
from collections import Counter
from fractions import Fraction

from rlpractice.grading.mathparse import extract_answer
from rlpractice.grading.registry import Grade, verifier

MAX_CHARS = 100  # longer answers are rejected unparsed: they bound the work and the recursion below
MAX_DEPTH = 10  # brackets nested deeper than this are rejected (four numbers need at most three)
TOKEN = re.compile(r"\s*([0-9]+|[-+*/()])")  # [0-9], not \d: int() would read other scripts' digits too


def evaluate(text: str) -> tuple[Fraction, list[int]]:
    """The exact value of `text` and the numbers written in it; ValueError (with the reason) if not allowed."""
    if len(text) > MAX_CHARS:
        raise ValueError(f"answer is longer than {MAX_CHARS} characters")
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unexpected character {text[pos:].lstrip()[0]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    used: list[int] = []
    i = 0

    def expr(depth: int) -> Fraction:  # expr := term (('+' | '-') term)*
        nonlocal i
        value = term(depth)
        while i < len(tokens) and tokens[i] in "+-":
            i += 1
            op, rhs = tokens[i - 1], term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(depth: int) -> Fraction:  # term := atom (('*' | '/') atom)*
        nonlocal i
        value = atom(depth)
        while i < len(tokens) and tokens[i] in "*/":
            i += 1
            op, rhs = tokens[i - 1], atom(depth)
            if op == "/" and rhs == 0:
                raise ValueError("divides by zero")
            value = value * rhs if op == "*" else value / rhs
        return value

    def atom(depth: int) -> Fraction:  # atom := number | '(' expr ')'
        nonlocal i
        if i >= len(tokens):
            raise ValueError("answer ends too early")
        tok = tokens[i]
        i += 1
        if tok[0].isdigit():
            used.append(int(tok))
            return Fraction(int(tok))
        if tok != "(":
            raise ValueError(f"unexpected {tok!r}")
        if depth >= MAX_DEPTH:
            raise ValueError(f"brackets nested deeper than {MAX_DEPTH}")
        value = expr(depth + 1)
        if i >= len(tokens) or tokens[i] != ")":
            raise ValueError("a '(' is not closed")
        i += 1
        return value

    value = expr(0)
    if i < len(tokens):
        raise ValueError(f"unexpected {tokens[i]!r}")
    return value, used


def _times(k: int) -> str:
    return {1: "once", 2: "twice"}.get(k, f"{k} times")


def countdown(completion: str, answer: str, numbers: list[int] | None = None, target: int | None = None,
              **_) -> Grade:
    if numbers is None or target is None:
        return Grade(0.0, "countdown needs the dataset columns numbers and target")
    numbers, target = [int(n) for n in numbers], int(target)
    pred = extract_answer(completion)
    if not pred:
        return Grade(0.0, "no final answer")
    try:
        value, used = evaluate(pred)
    except ValueError as exc:
        return Grade(0.0, str(exc))
    have, given = Counter(used), Counter(numbers)
    extra, missing = sorted(have - given), sorted(given - have)
    if extra:  # reported before a missing number: it is the more telling mistake
        n = extra[0]
        return Grade(0.0, f"uses {n} {_times(have[n])}, not {_times(given[n])}" if given[n] else
                     f"uses {n}, which is not one of the numbers")
    if missing:
        return Grade(0.0, f"does not use {missing[0]}")
    if value != target:
        return Grade(0.0, f"makes {value}, not {target}")
    return Grade(1.0, f"uses {', '.join(map(str, numbers))} once each and makes {target}")


# Cheap and safe (no eval, bounded input), so it is also its own fast path: no worker process needed.
verifier("countdown", fast=countdown)(countdown)
