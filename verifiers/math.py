"""The default verifier: is the model's final answer mathematically equal to the gold answer?

Plain numbers ('42', '3/4', '0.75', '1,000') are compared exactly in the trainer process (fast path).
Everything else is parsed by rlpractice's eval-free parser and compared with sympy, exactly:
no float tolerance, so 1/2^99 is not 1/2^98. Decimal policy: a decimal prediction is also accepted
when it has 2+ decimals and equals the gold value rounded to them (0.33 for 1/3, not 0.3).
"""

from fractions import Fraction

import sympy

from rlpractice.grading.mathparse import ParseError, extract_answer, parse_math, plain_number
from rlpractice.grading.registry import Grade, verifier

MIN_ROUNDED_DECIMALS = 2  # 0.33 passes for 1/3; 0.3 does not


def _rounded_match(pred_text: str, gold: Fraction) -> bool:
    decimals = len(pred_text.split(".")[1]) if "." in pred_text else 0
    if decimals < MIN_ROUNDED_DECIMALS or gold.denominator == 1:
        return False
    return round(gold, decimals) == plain_number(pred_text)


def fast(completion: str, answer: str, **_) -> Grade | None:
    pred = extract_answer(completion)
    if pred is None:
        return Grade(0.0, "no final answer found")
    p, g = plain_number(pred), plain_number(answer)
    if p is None or g is None:
        return None  # not plain numbers: needs the CAS (in a worker process)
    if p == g:
        return Grade(1.0, f"{pred} equals {answer}")
    if _rounded_match(pred, g):
        return Grade(1.0, f"{pred} is {answer} rounded")
    return Grade(0.0, f"{pred} != {answer}")


@verifier("math", fast=fast)
def math_equal(completion: str, answer: str, **_) -> Grade:
    quick = fast(completion, answer)
    if quick is not None:
        return quick
    pred = extract_answer(completion)
    try:
        gold_expr = parse_math(answer)
    except ParseError as exc:
        return Grade(0.0, f"gold answer {answer!r} unparseable: {exc}")
    try:
        pred_expr = parse_math(pred)
    except ParseError as exc:
        return Grade(0.0, f"prediction {pred!r} unparseable: {exc}")
    if pred_expr == gold_expr or sympy.simplify(pred_expr - gold_expr) == 0:
        return Grade(1.0, f"{pred} equals {answer}")
    return Grade(0.0, f"{pred} != {answer}")
