import math
import os

import pytest
import sympy

from rlpractice.errors import UserError
from rlpractice.grading import mathparse
from rlpractice.grading.mathparse import MAX_BITS, ParseError, extract_answer, parse_math
from rlpractice.grading.pool import GradingPool
from rlpractice.grading.registry import Grade, get_verifier

math_verify = get_verifier("math").fn

CORRECT = [
    ("3/4", " 1/4 + 2/4 = 3/4. Answer: 3/4"),
    ("3/4", "Answer: 6/8"),
    ("3/4", "Answer: 0.75"),
    ("3/4", "Answer: \\frac{3}{4}"),
    ("3/4", "so \\boxed{\\dfrac{3}{4}}"),
    ("1000", "Answer: 1,000"),
    ("10", "Answer: 10 cm"),
    ("10", "Answer: \\text{10}"),
    ("13", "#### 13"),
    ("13", "The answer is 13."),
    ("1/3", "Answer: 0.33"),  # rounding policy: decimals equal to the gold rounded to their places
    ("2\\sqrt{2}", "Answer: \\sqrt{8}"),
    ("x^2+2x+1", "Answer: (x+1)^2"),
    ("2\\pi", "Answer: 2 \\cdot \\pi"),
    ("42", "first \\boxed{41} then \\boxed{42}"),
    ("x=2", "Answer: 2x=4"),  # equations: same solution set
    ("2x-y+1=0", "Answer: y=2x+1"),
    ("\\{1,2\\}", "Answer: \\{2,1\\}"),
    ("[0,1)", "Answer: [0, 1)"),
    ("2, 3", "Answer: 3, 2"),  # a list of answers is compared as a set
    ("120", "Answer: 5!"),
    ("\\frac{1}{2004!}", "Answer: \\frac{1}{2004!}"),
    ("e", "Answer: 2.72"),  # rounding policy, irrational gold
]
WRONG = [
    ("3/4", "Answer: 3/5"),
    ("3/4", "Answer: 0.7"),
    ("1/3", "Answer: 0.3"),
    ("1/2^99", "Answer: 1/2^98"),  # exact, no float chopping
    ("1-\\frac{1}{e}", "Answer: 1+\\frac{1}{e}"),
    ("50", "Answer: 0.5"),  # no percent guessing
    ("42", "I think it is 42"),  # no marked answer
    ("42", ""),
    ("3x+4y+14=0", "Answer: 3x-y+13=0"),  # not 'both reduce to 0'
    ("x^2=4", "Answer: x=2"),
    ("(1,2)", "Answer: (2,1)"),  # tuples are ordered
    ("[0,1]", "Answer: (0,1)"),
    ("1/2004!", "Answer: 1/2006!"),
    ("1/2^99", "Answer: 0.00"),  # rounding needs significant digits
]


@pytest.mark.parametrize("gold,completion", CORRECT)
def test_accepts_equivalent_forms(gold, completion):
    g = math_verify(completion, gold)
    assert g.reward == 1.0, g.reason


@pytest.mark.parametrize("gold,completion", WRONG)
def test_rejects_wrong_answers(gold, completion):
    g = math_verify(completion, gold)
    assert g.reward == 0.0, g.reason
    assert g.reason


def test_extract_answer_prefers_boxed_then_last_mark():
    assert extract_answer("Answer: 1. Answer: 2.") == "2"
    assert extract_answer("\\boxed{\\frac{1}{2}} Answer: 3") == "\\frac{1}{2}"
    assert extract_answer("nothing here") is None


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch /tmp/pwned_rlpractice')",
    "5^{5^{5^{5^5}}}",
    "9" * 500,
    "(" * 300,
    "exec('1')",
])
def test_parser_rejects_hostile_input_without_evaluating(text):
    with pytest.raises(ParseError):
        parse_math(text)
    assert not os.path.exists("/tmp/pwned_rlpractice")


INJECTIONS = [
    "__import__('os').system('touch /tmp/pwned_rlpractice')",
    "eval('__import__(\"os\").system(\"touch /tmp/pwned_rlpractice\")')",
    "exec('import os')",
    "lambda: __import__('os')",
    "(1).__class__.__bases__[0].__subclasses__()",
    "x.__globals__",
    "open('/tmp/pwned_rlpractice', 'w')",
    "getattr(os, 'system')('ls')",
    "\\input{/etc/passwd}",
    "$(touch /tmp/pwned_rlpractice)",
    "os.system('ls')",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_code_injection_is_unparseable_and_does_nothing(text):
    with pytest.raises(ParseError):
        parse_math(text)
    for gold, completion in [("42", f"Answer: {text}"), (text, "Answer: 42"), ("42", f"\\boxed{{{text}}}")]:
        grade = math_verify(completion, gold)
        assert grade.reward == 0.0 and "unparseable" in grade.reason, grade.reason
    assert not os.path.exists("/tmp/pwned_rlpractice")


class SympyWithoutHugeNumbers:
    """`sympy` as the parser sees it, except that a power, factorial or binomial of numbers whose exact value would
    have more bits than the parser lets any number have (MAX_BITS) is recorded in `huge` and refused, not computed:
    a parser that got that far fails the test at once instead of computing for minutes."""

    def __init__(self):
        self.huge: list[str] = []

    def __getattr__(self, name):
        return getattr(sympy, name)

    def _refuse_over_cap(self, bits: int, what: str) -> None:
        if bits > MAX_BITS:
            self.huge.append(f"{what}: about {bits} bits")
            raise ArithmeticError(f"the parser asked sympy for {what}")

    def Pow(self, base, exponent):  # noqa: N802 - sympy's name
        if base.is_Rational and exponent.is_Rational and abs(base) != 1:
            bits = max(abs(base.p).bit_length(), base.q.bit_length())
            self._refuse_over_cap(bits * abs(int(exponent.p)) // int(exponent.q), "a power")
        return sympy.Pow(base, exponent)

    def factorial(self, n):
        if n.is_Integer and n > 1:
            self._refuse_over_cap(int(n) * int(n).bit_length(), "a factorial")  # n! < n^n
        return sympy.factorial(n)

    def factorial2(self, n):
        if n.is_Integer and n > 1:
            self._refuse_over_cap(int(n) * int(n).bit_length(), "a double factorial")
        return sympy.factorial2(n)

    def binomial(self, n, k):
        if n.is_Integer and k.is_Integer and 0 < k < n:
            self._refuse_over_cap(min(int(n), int(min(k, n - k)) * int(n).bit_length()), "a binomial")  # C < 2^n, n^k
        return sympy.binomial(n, k)


@pytest.fixture
def without_huge_numbers(monkeypatch):
    """The parser with SympyWithoutHugeNumbers for sympy, and no cached parses (before or after)."""
    guard = SympyWithoutHugeNumbers()
    monkeypatch.setattr(mathparse, "sympy", guard)
    mathparse._parse_cached.cache_clear()
    yield guard
    mathparse._parse_cached.cache_clear()


@pytest.mark.parametrize("text, reason", [
    ("5^{5^{5^{5^5}}}", "exponent too large"), ("10^{10^{10}}", "exponent too large"),
    ("2^2^2^2^2^2", "exponent too large"), ("9^{9^{9^{9}}}", "exponent too large"),
    ("2^{100000}", "exponent too large"), ("1e1000000", "exponent too large"),
    ("100000!", "factorial of something other than a whole number 0..5000"),
    ("(10^{100})!", "factorial of something other than a whole number 0..5000"),
    ("\\binom{10^9}{5}", "binomial of something other than a whole number up to 5000"),
])
def test_power_towers_and_huge_numbers_are_refused_before_they_are_computed(without_huge_numbers, text, reason):
    # no clock: the reason is a cap the parser checks before it computes (not 'number too large', which it finds in
    # a number it has built: how 1e1000000 would end without its cap), and sympy was never asked for a number
    # over MAX_BITS (how a tower would end without the caps: computed for minutes, or here refused and recorded)
    with pytest.raises(ParseError) as info:
        parse_math(text)
    assert str(info.value).startswith(reason) and without_huge_numbers.huge == [], (str(info.value), text)


def test_the_guard_above_catches_a_parser_without_its_caps(without_huge_numbers, monkeypatch):
    for cap in ("MAX_EXPONENT", "MAX_FACTORIAL", "MAX_BITS"):  # the parser's; the guard keeps its own MAX_BITS
        monkeypatch.setattr(mathparse, cap, math.inf)
    for text in ["2^{100000}", "5^{5^{5^{5^5}}}", "100000!"]:
        with pytest.raises(ParseError):
            parse_math(text)
    assert len(without_huge_numbers.huge) == 3, without_huge_numbers.huge
    assert parse_math("2^{1000} + 5000!") > 0  # what the caps let through, the guard computes
    assert len(without_huge_numbers.huge) == 3


def test_moderate_nesting_is_fine():
    assert parse_math("(" * 30 + "1" + ")" * 30) == 1  # deeper is rejected (test_parser_rejects_hostile_input...)


def test_pool_grades_in_order_with_fast_path_and_workers():
    with GradingPool("math", num_workers=2, timeout_s=10) as pool:
        grades = pool.grade(["Answer: 3", "Answer: (x+1)^2", "Answer: 4", "nothing"], ["3", "x^2+2x+1", "5", "1"])
    assert [g.reward for g in grades] == [1.0, 1.0, 0.0, 0.0]
    assert grades[3].reason == "no final answer found"


PLUGIN = '''
import os, time
from rlpractice.grading.registry import Grade, verifier

@verifier("flaky_test")
def flaky(completion, answer, **columns):
    if completion == "hang":
        time.sleep(60)
        return Grade(0.0, "the hang ran to its end")
    if completion == "crash":
        os._exit(3)
    if completion == "raise":
        raise ValueError("boom")
    return Grade(float(completion == answer), "compared " + columns.get("tag", ""))
'''


def test_hang_crash_and_exception_cost_only_their_answer(tmp_path):
    (tmp_path / "flaky.py").write_text(PLUGIN)
    with GradingPool("flaky_test", plugins=[str(tmp_path / "flaky.py")], num_workers=2, timeout_s=1.0) as pool:
        grades = pool.grade(["a", "hang", "crash", "raise", "b"], ["a", "x", "x", "x", "b"],
                            [{"tag": "t"}] * 5)
    assert grades[0] == Grade(1.0, "compared t") and grades[4] == Grade(1.0, "compared t")
    # the hang was cut by the pool's 1 s deadline, before it ended: had the pool waited for the verifier, the grade
    # would be the hang's own ('the hang ran to its end', 60 s later); no clock needed to tell the two apart
    assert grades[1] == Grade(0.0, "timeout: verifier took longer than 1s")
    assert grades[2].reward == 0 and grades[2].reason.startswith("crash")
    assert grades[3].reward == 0 and "boom" in grades[3].reason


def test_unknown_verifier_names_what_to_do():
    with pytest.raises(UserError, match=r"unknown verifier 'nope'.*my_verifier\.py:fn.*@verifier\('nope'\)"):
        get_verifier("nope")
    with pytest.raises(UserError, match="no module named 'no_such_module'"):
        get_verifier("no_such_module:fn")


@pytest.mark.parametrize("name, gold, completion, reward", [
    ("exact", "Paris", "The capital is... Answer: paris.", 1.0),
    ("exact", "New  York", "Answer:   new york", 1.0),
    ("exact", "3/4", "Answer: 6/8", 0.0),  # exact means the string, not the value
    ("exact", "yes", "yes", 1.0),  # no marked answer: the whole completion is compared
    ("numeric", "3.14159265", "Answer: 3.141592651", 1.0),
    ("numeric", "0.5", "Answer: 1/2", 1.0),
    ("numeric", "1000", "Answer: 1,000.5", 0.0),
    ("numeric", "7", "Answer: seven", 0.0),
    ("numeric", "7", "no answer here", 0.0),
])
def test_exact_and_numeric_verifiers(name, gold, completion, reward):
    v = get_verifier(name)
    grade = v.fn(completion, gold)
    assert grade.reward == reward, grade.reason
    assert v.fast is not None and v.fast(completion, gold) == grade  # cheap and safe: graded in-process
