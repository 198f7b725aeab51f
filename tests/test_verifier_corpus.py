"""The math verifier agrees with every hand-labelled case of tests/verifier_corpus.jsonl.

Ordinary cases are graded by calling the verifier directly; the adversarial ones (code injection, power
towers, huge factorials, 10^6-character inputs, deep nesting, unicode junk, empty text) go through the
real GradingPool, one at a time, so each is timed: none may take longer than the timeout plus a second,
and none may need the timeout at all (the parser's caps reject them first).
"""

import builtins
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from sympy.core.cache import clear_cache
from sympy.parsing import sympy_parser

from rlpractice.grading import mathparse
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import get_verifier, is_failure

ROWS = [json.loads(line) for line in (Path(__file__).parent / "verifier_corpus.jsonl").read_text().splitlines()]
ADVERSARIAL = [r for r in ROWS if r["category"] == "adversarial"]
ORDINARY = [r for r in ROWS if r["category"] != "adversarial"]
TIMEOUT_S = 2.0
PWNED = "/tmp/pwned_rlpractice"  # what the injection cases in the corpus would create


def _show(r: dict, reason: str) -> str:
    return f"[{r['category']}] gold={r['gold'][:60]!r} pred={r['prediction'][-80:]!r} want {r['expected']}: {reason}"


def test_corpus_covers_every_form_in_both_directions():
    assert len(ROWS) >= 320
    counts = Counter(r["category"] for r in ROWS)
    for category in ["integers", "decimals", "fractions", "latex_fractions", "radicals", "pi", "percent", "units",
                     "thousands", "text", "extraction", "expressions", "equations", "sets", "tuples", "intervals",
                     "multiple_answers", "factorials", "unicode", "known_pitfalls", "adversarial"]:
        labels = {r["expected"] for r in ROWS if r["category"] == category}
        assert counts[category] >= 6 and labels == {True, False}, category


def _refusing(run):
    """eval/exec that refuse text and code compiled from text (sympify's way), except the code templates
    sympy's polynomial module builds for itself; imports (code from files) still work."""

    def guarded(source, *args, **kwargs):
        from_text = isinstance(source, str) or getattr(source, "co_filename", "<string>") == "<string>"
        if from_text and "sympy/polys/" not in sys._getframe(1).f_code.co_filename:
            raise AssertionError(f"eval/exec called on {source!r:.100}")
        return run(source, *args, **kwargs)

    return guarded


def _refuse_parse_expr(*args, **kwargs):
    raise AssertionError(f"sympy parse_expr called on {args[:1]!r:.100}")


def test_agrees_with_every_ordinary_label():
    math = get_verifier("math")
    wrong = []
    for r in ORDINARY:
        grade = math.fn(r["prediction"], r["gold"])
        assert grade.reason and not is_failure(grade.reason), _show(r, grade.reason)
        if (grade.reward == 1.0) != r["expected"]:
            wrong.append(_show(r, grade.reason))
        quick = math.fast(r["prediction"], r["gold"])
        assert quick is None or quick == grade  # the in-process fast path never disagrees with the full check
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong)


def test_grading_never_parses_text_with_eval(monkeypatch):
    """Nothing is parsed by Python or by sympy from text (sympify(str) goes through parse_expr and eval)."""
    math = get_verifier("math").fn
    before = [math(r["prediction"], r["gold"]) for r in ORDINARY]  # also imports what sympy imports lazily
    monkeypatch.setattr(builtins, "eval", _refusing(builtins.eval))
    monkeypatch.setattr(builtins, "exec", _refusing(builtins.exec))
    monkeypatch.setattr(sympy_parser, "parse_expr", _refuse_parse_expr)
    mathparse._parse_cached.cache_clear()  # parse and compare again, not from caches
    clear_cache()
    assert [math(r["prediction"], r["gold"]) for r in ORDINARY] == before


def test_adversarial_cases_are_rejected_fast_through_the_pool():
    if os.path.exists(PWNED):
        os.remove(PWNED)
    wrong, slowest = [], 0.0
    with GradingPool("math", num_workers=2, timeout_s=TIMEOUT_S) as pool:
        pool.grade(["Answer: (x+1)^2"], ["x^2+2x+1"])  # workers started and warm before timing
        for r in ADVERSARIAL:
            start = time.monotonic()
            grade = pool.grade([r["prediction"]], [r["gold"]])[0]
            elapsed = time.monotonic() - start
            slowest = max(slowest, elapsed)
            assert elapsed <= TIMEOUT_S + 1.0, _show(r, f"took {elapsed:.2f}s")
            assert not is_failure(grade.reason), _show(r, grade.reason)  # decided, not timed out or crashed
            if (grade.reward == 1.0) != r["expected"]:
                wrong.append(_show(r, grade.reason))
    assert not wrong, "\n".join(wrong)
    assert not os.path.exists(PWNED)
    print(f"slowest adversarial grading: {slowest:.3f}s (timeout {TIMEOUT_S}s)")
