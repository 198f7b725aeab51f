"""A built-in textbook that uses the calculator: each arithmetic step of its printed solutions shows the call.

'4 * 4 = 16.' becomes '4 * 4 = <<4*4>> 16.': the model writes up to '>>', the calculator appends ' 16'
(rlpractice/tools/syntax.py). The exposition (pretraining text) and worked solutions (SFT) change, so the model
reads the syntax before SFT teaches it; practice and held-out problems are questions only, unchanged. Fraction
steps ('3/8 + 2/8 = 5/8.') stay as they are: they teach a rule, and the calculator would answer '0.625'.
"""

from __future__ import annotations

import re
from dataclasses import replace

from rlpractice.textbook.problems import Textbook

# whole numbers on both sides and no fraction bar touching them: '26 - 16 = 10', not '3/8 + 2/8 = 5/8'
ARITHMETIC_STEP = re.compile(r"(?<![\d/])(\d+) ([-+*/]) (\d+) = (\d+)(?![\d/])")


def with_calculator_calls(text: str) -> str:
    """'26 - 16 = 10.' -> '26 - 16 = <<26-16>> 10.'"""
    return ARITHMETIC_STEP.sub(lambda m: f"{m[1]} {m[2]} {m[3]} = <<{m[1]}{m[2]}{m[3]}>> {m[4]}", text)


def calculator_textbook(book: Textbook) -> Textbook:
    """`book` with calculator calls in its exposition and worked solutions."""
    return replace(book, exposition=[with_calculator_calls(t) for t in book.exposition],
                   worked=[replace(p, solution=with_calculator_calls(p.solution)) for p in book.worked])
