"""A built-in textbook that uses the calculator: each arithmetic step of its printed solutions shows the call.

'4 * 4 = 16.' becomes '4 * 4 = <<4*4>> 16.': the model writes up to '>>', the calculator appends ' 16'
(rlpractice/tools/syntax.py). A fraction solution becomes one call on the question's own numbers, as a student
with a calculator skips the common denominator: '1 = 7/7. 7/7 - 5/7 = 2/7. Answer: 2/7' becomes
'1 - 5/7 = <<1-5/7>> 2/7. Answer: 2/7', its answer as the calculator shows it ('0.625' for 5/8: the grader takes
equal values). The exposition (pretraining text) and worked solutions (SFT) change, so the model reads the syntax
before SFT teaches it; the exposition's paragraphs on fractions still teach the rules by hand. Practice and
held-out problems are questions only, unchanged.
"""

from __future__ import annotations

import re
from dataclasses import replace

from rlpractice.textbook.problems import Textbook
from rlpractice.tools.calculator import calculator

# whole numbers on both sides and no fraction bar touching them: '26 - 16 = 10', not '3/8 + 2/8 = 5/8'
ARITHMETIC_STEP = re.compile(r"(?<![\d/])(\d+) ([-+*/]) (\d+) = (\d+)(?![\d/])")
_F = r"\d+/\d+"
# the math textbook's fraction solutions through to their answer: 'a/d + b/d = s/d.', '1 = d/d. d/d - a/d = r/d.'
# or 'a/d1 = u/d2. u/d2 + b/d2 = s/d2.', each maybe followed by its simplest form ('6/8 = 3/4.')
FRACTION_SOLUTION = re.compile(rf"(?:(?P<first>1|{_F}) = {_F}\. {_F}|(?P<left>{_F})) (?P<op>[-+]) (?P<right>{_F}) "
                               rf"= {_F}\.(?: {_F} = \d+(?:/\d+)?\.)? Answer: \S+")


def _fraction_call(m: re.Match) -> str:
    left = m["first"] or m["left"]
    result = calculator(f"{left}{m['op']}{m['right']}")
    return f"{left} {m['op']} {m['right']} = <<{left}{m['op']}{m['right']}>> {result}. Answer: {result}"


def with_calculator_calls(text: str) -> str:
    """'26 - 16 = 10.' -> '26 - 16 = <<26-16>> 10.'; '3/8 + 2/8 = 5/8. Answer: 5/8' ->
    '3/8 + 2/8 = <<3/8+2/8>> 0.625. Answer: 0.625'."""
    text = FRACTION_SOLUTION.sub(_fraction_call, text)
    return ARITHMETIC_STEP.sub(lambda m: f"{m[1]} {m[2]} {m[3]} = <<{m[1]}{m[2]}{m[3]}>> {m[4]}", text)


def calculator_textbook(book: Textbook) -> Textbook:
    """`book` with calculator calls in its exposition and worked solutions."""
    return replace(book, exposition=[with_calculator_calls(t) for t in book.exposition],
                   worked=[replace(p, solution=with_calculator_calls(p.solution)) for p in book.worked])
