"""The calculator tool: exact arithmetic on one expression, without eval.

It reuses the grader's parser (grading/mathparse.py), which builds sympy numbers from whitelisted tokens and
caps input length, nesting, exponents, factorials and the size of every number before computing it.
Accepted: + - * / ^ (or **), brackets, decimals, x and ÷, fractions, sqrt, pi, n!. Not accepted: '=' (a
call holds one expression), '%' (ambiguous: write /100), variables.

Results: a whole number as an integer ('10'); a fraction whose decimal expansion ends within
MAX_DECIMAL_PLACES places as that decimal ('5/2' -> '2.5', GSM8K's money amounts); any other fraction as
'p/q' ('1/3'); an irrational value rounded to SIGNIFICANT digits ('sqrt(2)' -> '1.41421356237').
"""

from __future__ import annotations

import sympy

from rlpractice.grading.answers import ParseError
from rlpractice.grading.mathparse import parse_math
from rlpractice.tools.syntax import ToolError

MAX_INPUT_CHARS = 200
MAX_RESULT_DIGITS = 100  # digits of a result's numerator or denominator
MAX_DECIMAL_PLACES = 12
SIGNIFICANT = 12


def format_number(value: sympy.Expr) -> str:
    """'10', '2.5', '-1/3', '1.41421356237': see the module docstring."""
    if value.is_Rational:
        p, q = int(value.p), int(value.q)
        if max(abs(p), q) >= 10**MAX_RESULT_DIGITS:  # compared, not printed: str() of 10^5000 is refused
            raise ToolError(f"result has more than {MAX_RESULT_DIGITS} digits")
        if q == 1:
            return str(p)
        twos, fives, rest = 0, 0, q
        while rest % 2 == 0:
            rest, twos = rest // 2, twos + 1
        while rest % 5 == 0:
            rest, fives = rest // 5, fives + 1
        places = max(twos, fives)
        if rest == 1 and places <= MAX_DECIMAL_PLACES:  # terminating: p/q = p*10^places/q / 10^places
            digits = str(abs(p) * 10**places // q).rjust(places + 1, "0")
            return ("-" if p < 0 else "") + digits[:-places] + "." + digits[-places:]
        return f"{p}/{q}"
    if value.is_real is False or value.has(sympy.I):
        raise ToolError("the result is not a real number")
    number = sympy.N(value, SIGNIFICANT)
    if not number.is_Float:
        raise ToolError("the result is not a number")
    text = f"{float(number):.{SIGNIFICANT}g}"
    if "e" in text or "inf" in text or "nan" in text:
        raise ToolError("the result is too large or too small to show")
    return text


def calculator(expression: str) -> str:
    """'26-16' -> '10', '1/3+1/6' -> '0.5', '2/3' -> '2/3'. Raises ToolError with a short reason."""
    expression = expression.strip()
    if not expression:
        raise ToolError("empty expression")
    if len(expression) > MAX_INPUT_CHARS:
        raise ToolError(f"expression longer than {MAX_INPUT_CHARS} characters")
    if "=" in expression:
        raise ToolError("one expression per call, without '='")
    if "%" in expression:
        raise ToolError("'%' is not supported: divide by 100")
    try:
        value = parse_math(expression)
    except ParseError as exc:
        raise ToolError(str(exc)) from None
    if value.free_symbols:
        raise ToolError(f"unknown name(s): {', '.join(sorted(map(str, value.free_symbols)))}")
    if value.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        raise ToolError("the result is not a finite number")
    return format_number(value)
