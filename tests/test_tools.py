"""Tool-call syntax, the calculator, the registry and the runner (no sandbox here: see test_sandbox.py)."""

import threading

import pytest
import sympy

from rlpractice.errors import UserError
from rlpractice.grading import mathparse
from rlpractice.grading.mathparse import MAX_BITS
from rlpractice.tools import CALCULATOR, PYTHON, ToolError, ToolRunner, format_result, parse_call, stop_strings, tool
from rlpractice.tools.calculator import calculator
from rlpractice.tools.syntax import from_gsm8k, truncate_middle

BOTH = {"calculator": CALCULATOR, "python": PYTHON}

# ------------------------------------------------------------------ syntax


def test_stop_strings_are_the_call_ends():
    assert stop_strings(BOTH) == [">>", "```output"]


def test_parse_calculator_call_at_the_end():
    call = parse_call("4 * 4 = <<4*4>> 16. 26 - 16 = <<26 - 16>>", BOTH)
    assert (call.tool, call.argument, call.spill, call.error) == ("calculator", "26 - 16", "", None)


def test_parse_keeps_the_spill_of_a_token_that_ran_past_the_stop_string():
    call = parse_call("so <<3*4>>.", BOTH)  # the engine's last token was '>>.'
    assert (call.argument, call.spill) == ("3*4", ".")


def test_parse_returns_none_when_the_stop_is_not_a_call():
    assert parse_call("no call here", BOTH) is None
    assert parse_call("x = <<2\ny = 5 >>", BOTH) is None  # a '>>' with no '<<' on its line
    assert parse_call("<<1+1>> 2 and then a longer tail of text", BOTH) is None  # the call is not at the end


def test_parse_python_block_drops_the_fence():
    text = "Compute it.\n```python\nx = 26 - 16\n    # indented\nprint(x)\n```\n```output"
    call = parse_call(text, BOTH)
    assert (call.tool, call.argument) == ("python", "x = 26 - 16\n    # indented\nprint(x)")


def test_parse_python_without_an_opening_block_is_a_malformed_call():
    text = "```python\nprint(1)\n```\n```output\n1\n```\nnow\n```output"  # the second asks again, without code
    call = parse_call(text, BOTH)
    assert call.tool == "python" and call.argument is None and "```python" in call.error


def test_format_result_calculator_and_python():
    assert format_result(CALCULATOR, "10") == " 10"
    assert format_result(PYTHON, "10\n") == "\n10\n```\n"
    error = format_result(PYTHON, "partial\n", "Traceback (most recent call last):\n  File x\nZeroDivisionError: boom")
    assert error == "\npartial\nerror: ZeroDivisionError: boom\n```\n"


def test_format_result_cuts_long_output_in_the_middle():
    out = "START" + "x" * 10_000 + "END"
    text = format_result(PYTHON, out, max_chars=200)
    assert len(text) <= 200 + len(PYTHON.result_prefix + PYTHON.result_suffix)
    assert "START" in text and "END" in text and "characters cut" in text
    assert truncate_middle("short", 200) == "short"


def test_format_result_error_is_one_short_line():
    text = format_result(CALCULATOR, "", "first\n\n" + "y" * 1000)
    assert "\n" not in text and text.startswith(" error: y") and len(text) < 200


def test_from_gsm8k():
    assert from_gsm8k("16 - 3 = <<16-3=13>>13 eggs") == "16 - 3 = <<16-3>> 13 eggs"
    assert from_gsm8k("<<10/4=2.5>>2.5 each") == "<<10/4>> 2.5 each"


# ------------------------------------------------------------------ calculator


@pytest.mark.parametrize("expr, want", [
    ("26-16", "10"), ("4*4", "16"), ("-5 - 3", "-8"), ("1/3 + 1/6", "0.5"), ("2/3", "2/3"), ("-1/3", "-1/3"),
    ("0.1 + 0.2", "0.3"),  # exact, not 0.30000000000000004
    ("10/4", "2.5"), ("7/8", "0.875"), ("1/3*3", "1"), ("2^100", "1267650600228229401496703205376"),
    ("2**10", "1024"), ("1,000 * 3", "3000"), ("12 × 3 ÷ 4", "9"), ("5!", "120"), ("sqrt(16)", "4"),
    ("sqrt(2)", "1.41421356237"), ("1/1024", "0.0009765625"),
])
def test_calculator_is_exact(expr, want):
    assert calculator(expr) == want


class SympyWithoutHugePowers:
    """`sympy` as the calculator's parser (grading/mathparse.py) sees it, except that a power of numbers over the
    parser's own size cap (MAX_BITS) is recorded in `huge` and refused, not computed (tests/test_verifier.py has
    the same guard for every kind of big number, and shows it catches a parser without its caps)."""

    def __init__(self):
        self.huge: list[str] = []

    def __getattr__(self, name):
        return getattr(sympy, name)

    def Pow(self, base, exponent):  # noqa: N802 - sympy's name
        if base.is_Rational and exponent.is_Integer and abs(base) != 1:
            bits = max(abs(base.p).bit_length(), base.q.bit_length()) * abs(int(exponent))
            if bits > MAX_BITS:
                self.huge.append(f"a power of about {bits} bits")
                raise ArithmeticError(self.huge[-1])
        return sympy.Pow(base, exponent)


@pytest.mark.parametrize("expr, reason", [
    ("1/0", "division by zero"), ("16-3=13", "without '='"), ("50%", "divide by 100"), ("x + 1", "unknown name"),
    ("eval(1)", "unknown word"), ("__import__('os')", "unknown word"), ("", "empty"),
    ("1+" * 200 + "1", "longer than"), ("2^100000", "exponent too large"), ("5^5^5^5^5", "exponent too large"),
    ("99^9999", "more than 100 digits"), ("10^200", "more than 100 digits"), ("(-1)^(1/2)", "not a real number"),
])
def test_calculator_refuses_with_a_reason(expr, reason, monkeypatch):
    # refused before computing anything big, shown without a clock: with the guard above, a calculator that tried
    # 2^100000 or 5^5^5^5^5 fails here (a power refused and recorded, and another reason) instead of computing
    # for a long time or forever
    guard = SympyWithoutHugePowers()
    monkeypatch.setattr(mathparse, "sympy", guard)
    mathparse._parse_cached.cache_clear()
    try:
        with pytest.raises(ToolError, match=reason):
            calculator(expr)
    finally:
        mathparse._parse_cached.cache_clear()
    assert guard.huge == []


# ------------------------------------------------------------------ registry and runner


def test_a_user_tool_in_a_few_lines():
    @tool("reverse")
    def reverse(text: str) -> str:
        if not text:
            raise ToolError("nothing to reverse")
        return text[::-1]

    runner = ToolRunner(["calculator", "reverse"])
    assert "</reverse>" in runner.stop_strings
    [ok, bad] = runner.run([runner.parse("Backwards: <reverse>abc</reverse>"), runner.parse("<reverse></reverse>")])
    assert (ok.text, ok.error) == ("<output>cba</output>", None)
    assert bad.text == "<output>error: nothing to reverse</output>" and bad.error == "nothing to reverse"
    runner.close()


def test_runner_turns_failures_and_slow_tools_into_error_results():
    release, slow_returned = threading.Event(), threading.Event()

    @tool("crash")
    def crash(arg: str) -> str:
        raise ValueError("bad " + arg)

    @tool("slow", timeout=0.3)
    def slow(arg: str) -> str:
        release.wait(60)  # set below, once the caller has every result; the 60 s only a runner that waits reaches
        slow_returned.set()
        return "late"

    runner = ToolRunner(["crash", "slow", "calculator"])
    crashed, late, calc = runner.run([runner.parse("<crash>x</crash>"), runner.parse("<slow>x</slow>"),
                                      runner.parse("<<1/0>>")])
    # the slow call did not hold up the others or the caller: all three results are in while it is still running
    assert not slow_returned.is_set()
    release.set()
    assert crashed.error == "ValueError: bad x" and "error: ValueError: bad x" in crashed.text
    assert late.timed_out and late.error.startswith("timeout") and "late" not in late.text
    assert calc.text == " error: division by zero" and not calc.timed_out
    malformed = runner.submit(runner.parse("no opening tag</crash>")).result()
    assert malformed.text == "<output>error: no '<crash>' before '</crash>'</output>"
    runner.close()


def test_unknown_tool_is_a_user_error():
    with pytest.raises(UserError, match="unknown tool 'nope'"):
        ToolRunner(["nope"])
