"""The default verifier: is the model's final answer mathematically equal to the gold answer?

Plain numbers ('42', '3/4', '0.75', '1,000') are compared exactly in the trainer process (`fast`).
Everything else goes to the isolated worker processes: rlpractice's eval-free parser reads both answers
(mathparse.py) and equivalence.py decides, exactly where the values are exact. Each grade says why.

Policies (each is a constant or a rule in the module named):
- extraction (extract.py): the last \\boxed{} (only the last, when several), else the last 'Answer:', '####',
  'the answer is'; no mark, no answer (we never guess the last number in the text);
- decimals (equivalence.MIN_ROUNDED_*): a decimal with 2+ places and 2+ significant digits also matches the
  exact value rounded to it (0.33 for 1/3, 1.41 for sqrt 2); otherwise numbers compare exactly;
- exactness (equivalence.py): rationals compare exactly; other numbers must be equal for sympy or agree to
  50 digits with no provable difference; expressions with variables must agree at random points (exactly,
  for rational functions); the reason says which check decided;
- units, '\\text{}' words after a number, percent and degree signs are dropped; no x100 percent guessing;
  unicode minus, x, /, pi, sqrt, superscripts and other scripts' digits read as their ASCII forms (lexer.py);
- '1,000' is one thousand; '2, 3' (and '2 or 3') is a list of answers, compared as a set, as are '{2, 3}';
  '(2, 3)' is a tuple or an interval and compares in order, with its brackets;
- 'e' is Euler's number and 'i' the imaginary unit: variables with those names are too rare in final answers
  to be worth the ambiguity; '2e3' and '1.5e-3' are scientific notation, '2e-1' is 2e - 1;
- equations compare by solution set, 'x = 5' equals '5', inequalities compare as sets of reals;
- caps (mathparse.MAX_*, lexer.MAX_*): answer length, nesting, digits, exponents, factorials, size of numbers;
  an answer over a cap is unparseable (reward 0, with the reason).
"""

from rlpractice.grading.equivalence import equivalent, rounded_match
from rlpractice.grading.extract import decimal_places, extract_answer, plain_number
from rlpractice.grading.mathparse import ParseError, parse_answer
from rlpractice.grading.registry import Grade, verifier


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def fast(completion: str, answer: str, **_) -> Grade | None:
    pred = extract_answer(completion)
    if pred is None:
        return Grade(0.0, "no final answer found")
    p, g = plain_number(pred), plain_number(answer)
    if p is None or g is None:
        return None  # not plain numbers: needs the CAS (in a worker process)
    if p == g:
        return Grade(1.0, f"{pred} equals {answer}")
    if rounded_match(p, decimal_places(pred), g, decimal_places(answer)):
        return Grade(1.0, f"{pred} is {answer} rounded")
    return Grade(0.0, f"{pred} != {answer}")


@verifier("math", fast=fast)
def math_equal(completion: str, answer: str, **_) -> Grade:
    quick = fast(completion, answer)
    if quick is not None:
        return quick
    pred = extract_answer(completion)
    try:
        gold = parse_answer(answer)
    except ParseError as exc:
        return Grade(0.0, f"gold answer {_clip(answer)!r} unparseable: {exc}")
    try:
        parsed = parse_answer(pred)
    except ParseError as exc:
        return Grade(0.0, f"prediction {_clip(pred)!r} unparseable: {exc}")
    try:
        ok, why = equivalent(parsed, gold)
    except Exception as exc:  # noqa: BLE001 - sympy could not decide (e.g. an inequality it cannot solve)
        return Grade(0.0, f"cannot compare {_clip(pred)} with {_clip(answer)} ({type(exc).__name__})")
    return Grade(float(ok), f"{_clip(pred)} {'==' if ok else '!='} {_clip(answer)}: {why}")
