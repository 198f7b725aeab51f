"""Find the final answer in a completion, and read plain numbers without a CAS.

Extraction policy: the last `\\boxed{...}` (or `\\fbox{...}`) wins; without one, the text after the last
'Answer:', else the last '####', else the last 'the (final) answer is', up to the end of that line.
Text with none of these marks has no answer (reward 0): we never guess the last number in the text.
All of it is linear-time string scanning, so a 10^6-character completion costs milliseconds.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Marks of a final answer, most specific first; the text after the *last* mark, up to the line end.
_MARKS = [
    re.compile(r"answer\s*:", re.IGNORECASE),
    re.compile(r"####"),
    re.compile(r"the (?:final )?answer is\s*:?", re.IGNORECASE),
]
_BOXES = ("\\boxed", "\\fbox")


def _last_boxed(text: str) -> str | None:
    """Contents of the last \\boxed{...}, braces balanced; None if there is none (or it never closes)."""
    start = max(text.rfind(box) for box in _BOXES)
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0 or text[start:i].rstrip() not in _BOXES:  # '\\boxed {x}' is fine, '\\boxed 5 ... {' is not
        return None
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def _tidy(answer: str) -> str:
    """Strip what wraps an answer: spaces, markdown bold, the sentence after it, a final period, $...$."""
    answer = answer.strip().strip("*").strip()  # markdown bold: '**7**'
    if answer.startswith("$"):  # 'the answer is $9$. I hope...': the first math span
        delim = "$$" if answer.startswith("$$") else "$"
        end = answer.find(delim, len(delim))
        answer = answer[: end + len(delim)] if end > 0 else answer
    answer = re.split(r"\.\s", answer, maxsplit=1)[0]  # 'Answer: 7. Because...': '7'
    answer = answer.strip().rstrip(".").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(answer) > len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
            answer = answer[len(left) : -len(right)].strip().rstrip(".").strip()
    return answer


def extract_answer(text: str) -> str | None:
    """The final answer marked in `text` (see the module docstring), or None."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    for mark in _MARKS:
        last = None
        for last in mark.finditer(text):  # noqa: B007 - we want the last match
            pass
        if last is not None:
            rest = text[last.end() :].lstrip(" *\t")  # '**Answer:** 7'
            if rest.startswith("\n"):  # 'Answer:' alone on its line: the answer is on the next one
                rest = rest.lstrip()
            return _tidy(rest.split("\n")[0])
    return None


# ---------------------------------------------------------------- fast path: plain numbers

# [0-9], not \d: Fraction() would also read other scripts' digits, which the full parser normalises.
_PLAIN_NUMBER = re.compile(r"^[+-]?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?(/[0-9]+)?$")


def plain_number(s: str) -> Fraction | None:
    """Exact value of '42', '-3.5', '1,000', '3/4' (no CAS needed); None for anything else."""
    s = s.strip().replace(" ", "")
    if len(s) > 40 or not _PLAIN_NUMBER.match(s):
        return None
    num, _, den = s.replace(",", "").partition("/")
    try:
        value = Fraction(num)
        return value / Fraction(den) if den else value
    except (ValueError, ZeroDivisionError):
        return None


def decimal_places(s: str) -> int | None:
    """Digits after the point of a plain decimal such as '0.33' (2); None if `s` is not one."""
    s = s.strip().replace(",", "")
    m = re.fullmatch(r"[+-]?[0-9]*\.([0-9]+)", s)
    return len(m.group(1)) if m else None
