import os
import time

import pytest

from rlpractice.errors import UserError
from rlpractice.grading.mathparse import ParseError, extract_answer, parse_math
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


def test_power_towers_and_huge_numbers_are_rejected_by_the_parser_fast():
    for text in ["5^{5^{5^{5^5}}}", "10^{10^{10}}", "2^2^2^2^2^2", "100000!", "(10^{100})!", "1e1000000",
                 "9^{9^{9^{9}}}", "\\binom{10^9}{5}", "2^{100000}"]:
        start = time.monotonic()
        with pytest.raises(ParseError):
            parse_math(text)
        assert time.monotonic() - start < 0.1, text
    assert parse_math("(" * 30 + "1" + ")" * 30) == 1  # moderate nesting is fine; deeper is rejected above


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
    if completion == "crash":
        os._exit(3)
    if completion == "raise":
        raise ValueError("boom")
    return Grade(float(completion == answer), "compared " + columns.get("tag", ""))
'''


def test_hang_crash_and_exception_cost_only_their_answer(tmp_path):
    (tmp_path / "flaky.py").write_text(PLUGIN)
    with GradingPool("flaky_test", plugins=[str(tmp_path / "flaky.py")], num_workers=2, timeout_s=1.0) as pool:
        start = time.monotonic()
        grades = pool.grade(["a", "hang", "crash", "raise", "b"], ["a", "x", "x", "x", "b"],
                            [{"tag": "t"}] * 5)
        elapsed = time.monotonic() - start
    assert grades[0] == Grade(1.0, "compared t") and grades[4] == Grade(1.0, "compared t")
    assert grades[1].reward == 0 and grades[1].reason.startswith("timeout")
    assert grades[2].reward == 0 and grades[2].reason.startswith("crash")
    assert grades[3].reward == 0 and "boom" in grades[3].reason
    assert elapsed < 1.0 + 10  # the hang is cut at its timeout (+ worker restart), not after 60 s


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
