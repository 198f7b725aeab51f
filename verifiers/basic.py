"""Two verifiers that need no CAS: `exact` (string match after normalisation) and `numeric` (within a
relative tolerance). Both are cheap and safe, so they also serve as their own fast path (no worker)."""

import math
import re

from rlpractice.grading.mathparse import extract_answer, plain_number
from rlpractice.grading.registry import Grade, verifier

REL_TOL = 1e-6  # numeric: |pred - gold| <= REL_TOL * max(1, |gold|)


def normalise(text: str) -> str:
    """Lower case, no surrounding spaces/quotes/final period, inner whitespace collapsed."""
    return re.sub(r"\s+", " ", text.strip().strip("\"'").rstrip(".").strip().lower())


def _exact(completion: str, answer: str, **_) -> Grade:
    pred = extract_answer(completion)
    pred = completion if pred is None else pred
    ok = normalise(pred) == normalise(answer)
    return Grade(float(ok), f"{normalise(pred)!r} {'==' if ok else '!='} {normalise(answer)!r}")


def _numeric(completion: str, answer: str, **_) -> Grade:
    pred = extract_answer(completion)
    if pred is None:
        return Grade(0.0, "no final answer found")
    p, g = plain_number(pred), plain_number(answer)
    if g is None:
        return Grade(0.0, f"gold answer {answer!r} is not a number")
    if p is None:
        return Grade(0.0, f"prediction {pred!r} is not a number")
    ok = math.isclose(float(p), float(g), rel_tol=0.0, abs_tol=REL_TOL * max(1.0, abs(float(g))))
    return Grade(float(ok), f"{pred} {'~=' if ok else '!='} {answer} (rel. tol. {REL_TOL:g})")


exact = verifier("exact", fast=_exact)(_exact)
numeric = verifier("numeric", fast=_numeric)(_numeric)
