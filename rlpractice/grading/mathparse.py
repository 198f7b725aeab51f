"""Read a final answer out of model text, and parse it into sympy *without* eval.

Model output is untrusted: `sympy.sympify`/`parse_expr` call Python's eval. Here a small
recursive-descent parser over a whitelisted token set builds sympy objects directly, and caps
input length and exponent size before anything is evaluated.

Grammar (after LaTeX normalisation):
    expr   := term (('+' | '-') term)*
    term   := unary (('*' | '/' | implicit) unary)*
    unary  := ('-' | '+') unary | power
    power  := atom ('^' unary)?
    atom   := number | name | '(' expr ')' | '{' expr '}' | FRAC{expr}{expr} | SQRT[n]?{expr}
"""

from __future__ import annotations

import re
from fractions import Fraction

import sympy

MAX_ANSWER_CHARS = 200
MAX_EXPONENT = 1000  # |exponent| allowed in a power of numbers, so 2^1000 is fine, 5^5^5^5 is not
MAX_BASE_DIGITS = 50


class ParseError(ValueError):
    """The text is not a math expression this parser accepts (the reason is the message)."""


# ---------------------------------------------------------------- extraction

# Marks of a final answer, most specific first; the text after the *last* mark, up to the line end.
_MARKS = [re.compile(r"Answer:", re.IGNORECASE), re.compile(r"####"),
          re.compile(r"the (?:final )?answer is:?", re.IGNORECASE)]


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def extract_answer(text: str) -> str | None:
    """The final answer marked in `text`: last \\boxed{}, else last 'Answer:', '####', 'the answer is'."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    for mark in _MARKS:
        found = list(mark.finditer(text))
        if found:
            return text[found[-1].end() :].split("\n")[0].strip().rstrip(".").strip()
    return None


# ---------------------------------------------------------------- fast path: plain numbers

_PLAIN_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?(/\d+)?$")


def plain_number(s: str) -> Fraction | None:
    """Exact value of '42', '-3.5', '1,000', '3/4' (no CAS needed); None for anything else."""
    s = s.strip().replace(" ", "")
    if len(s) > 40 or not _PLAIN_NUMBER.match(s):
        return None
    s = s.replace(",", "")
    num, _, den = s.partition("/")
    try:
        value = Fraction(num)
        return value / Fraction(den) if den else value
    except (ValueError, ZeroDivisionError):
        return None


# ---------------------------------------------------------------- normalisation and tokens

_LATEX_REPLACEMENTS = [
    (r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |\$", ""),
    (r"\\[dt]frac", r"\\frac"),
    (r"\\cdot|\\times", "*"),
    (r"\\div", "/"),
    (r"\\pi", " pi "),
    (r"\\infty", " oo "),
    (r"\\%|%", ""),  # percent is a unit: "50%" is compared as 50 (no guessing of x100 / /100)
    (r"\*\*", "^"),
    (r"(\d),(\d{3})(?!\d)", r"\1\2"),  # thousands separators
]
_TEXT_RE = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")
_TRAILING_WORDS = re.compile(r"(?<=[\d}).\s])\s*([A-Za-z][A-Za-z ]*)$")
_TOKEN_RE = re.compile(r"\s*(\d+\.\d*|\.\d+|\d+|\\frac|\\sqrt|[A-Za-z]+|[-+*/^(){}\[\]])")
NAMES = {"pi": sympy.pi, "oo": sympy.oo}


def normalise(s: str) -> str:
    s = _TEXT_RE.sub(r" \1", s)
    for pattern, repl in _LATEX_REPLACEMENTS:
        s = re.sub(pattern, repl, s)
    s = s.strip()
    unit = _TRAILING_WORDS.search(s) if re.search(r"\d", s) else None
    if unit and not set(unit.group(1).split()) & set(NAMES) and len(unit.group(1).strip()) > 1:
        s = s[: unit.start()]  # "10 cm", "12 apples": the unit is dropped, the number compared
    return s.strip()


def tokenize(s: str) -> list[str]:
    tokens, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m:
            raise ParseError(f"unexpected character {s[pos]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ParseError(f"expected {expected or 'more input'}, got {tok or 'end of answer'}")
        self.i += 1
        return tok

    def expr(self) -> sympy.Expr:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> sympy.Expr:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/"):
                self.take()
                rhs = self.unary()
                if tok == "/" and rhs == 0:
                    raise ParseError("division by zero")
                value = value * rhs if tok == "*" else value / rhs
            elif tok is not None and (tok[0].isalnum() or tok in ("(", "{", "\\frac", "\\sqrt")):
                value = value * self.unary()  # implicit multiplication: 2pi, 3(x+1), 2\sqrt{3}
            else:
                return value

    def unary(self) -> sympy.Expr:
        if self.peek() in ("-", "+"):
            sign = -1 if self.take() == "-" else 1
            return sign * self.unary()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.unary()
        if exponent.is_number and base.is_number:
            if not exponent.is_finite or abs(exponent) > MAX_EXPONENT:
                raise ParseError(f"exponent too large (limit {MAX_EXPONENT})")
            if base.is_Integer and len(str(abs(int(base)))) > MAX_BASE_DIGITS:
                raise ParseError("base too large")
        return sympy.Pow(base, exponent)

    def braced(self) -> sympy.Expr:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self) -> sympy.Expr:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            if len(tok) > 60:
                raise ParseError("number too long")
            return sympy.Rational(tok)  # decimals are exact: 0.75 == 3/4
        if tok == "(":
            value = self.expr()
            self.take(")")
            return value
        if tok == "{":
            self.i -= 1
            return self.braced()
        if tok == "\\frac":
            num = self.braced()
            den = self.braced()
            if den == 0:
                raise ParseError("division by zero")
            return num / den
        if tok == "\\sqrt":
            index = 2
            if self.peek() == "[":
                self.take("[")
                index = self.expr()
                self.take("]")
            return sympy.root(self.braced(), index)
        if tok in NAMES:
            return NAMES[tok]
        if tok.isalpha() and len(tok) == 1:
            return sympy.Symbol(tok)
        raise ParseError(f"unknown name {tok!r}")


def parse_math(text: str) -> sympy.Expr:
    """A sympy expression for an answer such as '\\frac{3}{4}', '2\\sqrt{2}', '1,000 cm', 'x^2+1'."""
    if len(text) > MAX_ANSWER_CHARS:
        raise ParseError(f"answer longer than {MAX_ANSWER_CHARS} characters")
    tokens = tokenize(normalise(text))
    if not tokens:
        raise ParseError("empty answer")
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.peek() is not None:
        raise ParseError(f"unexpected {parser.peek()!r}")
    return value
