"""Parse a final answer into sympy objects *without* eval.

Model output is untrusted: `sympy.sympify`/`parse_expr` call Python's eval. Here a small recursive-descent
parser over a whitelisted token set builds sympy objects directly. Before anything is evaluated it caps
the input length, the nesting depth, the digits of a number, exponents, factorials and the size of every
exact number it builds, so a power tower such as 5^{5^{5^{5^5}}} is rejected in microseconds.

Grammar (over lexer.tokenize's tokens; words such as 'or' and 'and' separate answers like commas):
    answers  := item (',' item)*
    item     := relation ('\\cup' relation)*
    relation := sum (relop sum)* | symbol '\\in' item
    sum      := term (('+' | '-') term)*
    term     := signed (('*' | '/' | implicit) signed)*
    signed   := ('-' | '+')* power
    power    := postfix ('^' signed)?
    postfix  := atom ('!' | '!!')*
    atom     := number | symbol | constant | function arg | \\frac A A | \\sqrt[n]? A | \\binom A A
              | '(' items ')' | '[' items ')' | '{' items '}' | '\\{' items '\\}' | '|' sum '|'

Besides sympy expressions the parser returns the small containers of answers.py (Bracket, SetOf, UnionOf,
Relation, Answers, Text, DecimalLit); equivalence.py decides how they compare.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import sympy

from rlpractice.grading.answers import Answers, Bracket, DecimalLit, ParseError, Relation, SetOf, Text, UnionOf
from rlpractice.grading.extract import extract_answer, plain_number  # noqa: F401 - re-exported (older imports)
from rlpractice.grading.lexer import FUNCTIONS, GREEK, MAX_DEPTH, normalise, text_answer, tokenize

MAX_ANSWER_CHARS = 400  # longer answers are rejected unread
MAX_EXPONENT = 10_000  # |exponent| of a number: 2^10000 is fine, 5^{5^5^5} is not
MAX_SYMBOLIC_EXPONENT = 100  # |exponent| of an expression with variables: (x+1)^100
MAX_FACTORIAL = 5_000  # n! and binomials up to n = 5000 (2004! is fine: exact comparisons need it)
MAX_BITS = 70_000  # any exact number built (numerator or denominator): about 21,000 digits


_FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec,
    "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "sinh": sympy.sinh,
    "cosh": sympy.cosh, "tanh": sympy.tanh, "ln": sympy.log, "log": sympy.log, "exp": sympy.exp, "abs": sympy.Abs,
}
assert set(_FUNCTIONS) == FUNCTIONS
_CONSTANTS = {"\\pi": sympy.pi, "\\infty": sympy.oo, "e": sympy.E, "i": sympy.I}  # policy: e and i are constants
_RELOPS = {"=": "=", "<": "<", ">": ">", "\\le": "<=", "\\ge": ">=", "\\ne": "!="}
_ATOM_COMMANDS = {"\\frac", "\\sqrt", "\\usqrt", "\\binom", "\\pi", "\\infty"} | {"\\" + f for f in FUNCTIONS}


def _is_number(tok: str | None) -> bool:
    return tok is not None and (tok[0].isdigit() or tok[0] == ".")


def _lone_number(tokens: list[str]) -> str | None:
    """The number literal when `tokens` are just one, maybe signed: ['-', '0.5'] -> '0.5'."""
    if tokens and _is_number(tokens[-1]) and (len(tokens) == 1 or len(tokens) == 2 and tokens[0] in ("+", "-")):
        return tokens[-1]
    return None


def _check(value):
    """Reject numbers too big to work with, and undefined results (1/0, 0^-1)."""
    if isinstance(value, sympy.Rational):
        if max(abs(value.p).bit_length(), value.q.bit_length()) > MAX_BITS:
            raise ParseError("number too large")
    elif value in (sympy.zoo, sympy.nan) or (isinstance(value, sympy.Basic) and value.has(sympy.zoo, sympy.nan)):
        raise ParseError("undefined value (division by zero)")
    return value


# ---------------------------------------------------------------- parser


def _value(v):
    """The sympy value of an item: a decimal's exact value; containers cannot take part in arithmetic."""
    if isinstance(v, DecimalLit):
        return v.value
    if not isinstance(v, sympy.Expr):
        raise ParseError(f"a {type(v).__name__} cannot be used in arithmetic")
    return v


def _power(base, exponent):
    base, exponent = _value(base), _value(exponent)
    if exponent.is_number:
        if not exponent.is_finite:
            raise ParseError("infinite exponent")
        size = abs(exponent) if exponent.is_Rational else abs(sympy.N(exponent, 15))
        if base.is_number:
            if size > MAX_EXPONENT:
                raise ParseError(f"exponent too large (limit {MAX_EXPONENT})")
            if base.is_Rational and size > 1:
                bits = max(abs(base.p).bit_length(), base.q.bit_length())
                if bits * size > MAX_BITS:
                    raise ParseError("power too large")
        elif size > MAX_SYMBOLIC_EXPONENT:
            raise ParseError(f"exponent too large (limit {MAX_SYMBOLIC_EXPONENT} on variables)")
    return _check(sympy.Pow(base, exponent))


def _factorial(n, double: bool):
    n = _value(n)
    if n.is_number:
        if not (n.is_Integer and 0 <= n <= MAX_FACTORIAL):
            raise ParseError(f"factorial of something other than a whole number 0..{MAX_FACTORIAL}")
    return _check(sympy.factorial2(n) if double else sympy.factorial(n))


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.i, self.depth, self.abs_depth = tokens, 0, 0, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ParseError(f"expected {expected or 'more input'}, got {tok or 'end of answer'}")
        self.i += 1
        return tok

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"nested deeper than {MAX_DEPTH}")

    # -------- lists, relations, unions

    def items(self, closers: tuple[str, ...]) -> list:
        items = [self.item()]
        while self.peek() == "," or (self.peek() == ";" and not closers):
            self.take()
            items.append(self.item())
        return items

    def item(self):
        start = self.i
        value = self.relation()
        if self.peek() == "\\cup":
            parts = [value]
            while self.peek() == "\\cup":
                self.take()
                parts.append(self.relation())
            return UnionOf(tuple(parts))
        number = _lone_number(self.tokens[start : self.i]) or ""
        if "." in number and "e" not in number:  # a lone decimal: the rounding policy applies to it
            return DecimalLit(value, len(number.split(".")[1]))
        return value

    def relation(self):
        left = self.sum()
        if self.peek() == "\\in":  # 'x \in [0, 1)' is the set itself
            self.take()
            if not isinstance(left, sympy.Symbol):
                raise ParseError("'\\in' after something other than a variable")
            return self.item()
        ops, sides = [], [left]
        while self.peek() in _RELOPS:
            ops.append(_RELOPS[self.take()])
            sides.append(self.sum())
        if not ops:
            return left
        return Relation(tuple(ops), tuple(_value(s) for s in sides))

    # -------- arithmetic

    def sum(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = _value(self.term())
            value = _check(_value(value) + rhs if op == "+" else _value(value) - rhs)
        return value

    def _starts_factor(self, tok: str | None) -> bool:
        if tok is None:
            return False
        if tok == "|":
            return self.abs_depth == 0
        return tok[0].isalnum() or tok[0] == "." or tok in ("(", "{") or tok in _ATOM_COMMANDS or tok[1:] in GREEK

    def term(self):
        start = self.i
        value = self.signed()
        last_int = self.tokens[self.i - 1].isdigit()  # a whole number just read: '2 3' is not 6
        lone_int = (_lone_number(self.tokens[start : self.i]) or "").isdigit()
        while True:
            tok = self.peek()
            if tok in ("*", "/"):
                self.take()
                rhs = _value(self.signed())
                if tok == "/" and rhs == 0:
                    raise ParseError("division by zero")
                value = _check(_value(value) * rhs if tok == "*" else _value(value) / rhs)
            elif self._starts_factor(tok):
                if last_int and _is_number(tok):
                    raise ParseError("two numbers in a row")
                mixed = lone_int and tok == "\\frac"  # '2\frac12' is 2.5, but '2^2\frac12' is 2
                rhs = _value(self.signed())
                if mixed and rhs.is_Rational and 0 < rhs < 1:
                    value = value + rhs if value >= 0 else value - rhs
                else:
                    value = _check(_value(value) * rhs)  # implicit multiplication: 2pi, 3(x+1), 2\sqrt{3}
            else:
                return value
            last_int = lone_int = False

    def signed(self):
        sign = 1
        while self.peek() in ("-", "+"):
            sign = -sign if self.take() == "-" else sign
        value = self.power()
        return value if sign == 1 else _check(-_value(value))

    def power(self):
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        self.deeper()  # a power tower nests like brackets do
        exponent = self.signed()
        self.depth -= 1
        return _power(base, exponent)

    def postfix(self):
        value = self.atom()
        while self.peek() in ("!", "!!"):
            value = _factorial(value, self.take() == "!!")
        return value

    # -------- atoms

    def atom(self):
        self.deeper()
        try:
            return self._atom(self.take())
        finally:
            self.depth -= 1

    def _atom(self, tok: str):
        if _is_number(tok):
            return self.number(tok)
        if tok in _CONSTANTS:
            return _CONSTANTS[tok]
        if tok.isalpha() and len(tok) == 1:
            return sympy.Symbol(tok + self.subscript())
        if tok[1:] in GREEK:
            return sympy.Symbol(tok[1:] + self.subscript())
        if tok in ("(", "["):
            items = self.items((")", "]"))
            close = self.take()
            if close not in (")", "]"):
                raise ParseError(f"expected a closing bracket, got {close!r}")
            if len(items) > 1:
                return Bracket(tok, tuple(items), close)
            if tok + close not in ("()", "[]"):
                raise ParseError("mismatched brackets around one value")
            return items[0].value if isinstance(items[0], DecimalLit) else items[0]
        if tok == "{":
            items = self.items(("}",))
            self.take("}")
            return SetOf(tuple(items)) if len(items) > 1 else items[0]
        if tok == "\\{":
            items = [] if self.peek() == "\\}" else self.items(("\\}",))
            self.take("\\}")
            return SetOf(tuple(items))
        if tok in ("\\emptyset", "\\varnothing"):
            return SetOf(())
        if tok == "\\Reals":
            return Bracket("(", (-sympy.oo, sympy.oo), ")")
        if tok == "|":
            self.abs_depth += 1
            value = sympy.Abs(_value(self.sum()))
            self.abs_depth -= 1
            self.take("|")
            return value
        if tok == "\\frac":
            num, den = _value(self.latex_arg()), _value(self.latex_arg())
            if den == 0:
                raise ParseError("division by zero")
            return _check(num / den)
        if tok == "\\binom":
            n, k = _value(self.latex_arg()), _value(self.latex_arg())
            if n.is_number and not (n.is_Integer and abs(n) <= MAX_FACTORIAL):
                raise ParseError(f"binomial of something other than a whole number up to {MAX_FACTORIAL}")
            return _check(sympy.binomial(n, k))
        if tok in ("\\sqrt", "\\usqrt"):
            return self.root(tok)
        if tok[1:] in _FUNCTIONS:
            return self.function(tok[1:])
        raise ParseError(f"unknown {'command' if tok.startswith(chr(92)) else 'symbol'} {tok!r}")

    def number(self, tok: str):
        mantissa, _, exponent = tok.partition("e")  # scientific notation: 1e5, 1.5e-3
        value = Fraction(mantissa)  # decimals are exact: 0.75 == 3/4
        if exponent:
            if abs(int(exponent)) > MAX_EXPONENT:
                raise ParseError("exponent too large")
            value *= Fraction(10) ** int(exponent)
        return _check(sympy.Rational(value.numerator, value.denominator))

    def subscript(self) -> str:
        """'x_1', 'a_{n}': a subscript is part of a variable's name."""
        if self.peek() != "_":
            return ""
        self.take()
        if self.peek() != "{":
            tok = self.take()
            if not tok.isalnum():
                raise ParseError(f"bad subscript {tok!r}")
            return "_" + tok
        self.take("{")
        name = []
        while self.peek() != "}":
            tok = self.take()
            if not tok.isalnum():
                raise ParseError(f"bad subscript {tok!r}")
            name.append(tok)
        self.take("}")
        return "_" + "".join(name)

    def latex_arg(self):
        """A LaTeX argument: '{...}', or one character ('\\frac12' is 1/2, '\\sqrt2' is sqrt(2))."""
        tok = self.peek()
        if _is_number(tok) and len(tok) > 1 and tok.isdigit():
            self.tokens[self.i] = tok[1:]  # split '12' of '\frac12' into '1' and '2'
            self.tokens.insert(self.i, tok[0])
        return self.atom()

    def root(self, tok: str):
        index = sympy.Integer(2)
        if tok == "\\sqrt" and self.peek() == "[":
            self.take("[")
            index = _value(self.sum())
            self.take("]")
            if not (index.is_Integer and 2 <= index <= MAX_EXPONENT):
                raise ParseError(f"root index other than a whole number 2..{MAX_EXPONENT}")
        radicand = _value(self.latex_arg() if tok == "\\sqrt" else self.atom())  # '√12' is sqrt(12)
        if radicand.is_number and radicand.is_negative and index.is_odd:
            return _check(sympy.real_root(radicand, index))  # \sqrt[3]{-8} is -2
        return _check(sympy.root(radicand, index))

    def function(self, name: str):
        base = None
        if name == "log" and self.peek() == "_":
            self.take()
            base = _value(self.latex_arg())
        exponent = None
        if self.peek() == "^":  # \sin^2 x
            self.take()
            exponent = self.latex_arg()
        if self.peek() in ("(", "{"):
            arg = _value(self.atom())
        else:  # '\sin 2x' is sin(2x); '\sin x \cos x' is sin(x)*cos(x)
            arg = _value(self.power())
            while self.peek() is not None and (self.peek()[0].isalnum() or self.peek() in ("\\pi",)):
                arg = _check(arg * _value(self.power()))
        value = _FUNCTIONS[name](arg) if base is None else sympy.log(arg, base)
        return _power(value, exponent) if exponent is not None else _check(value)


# ---------------------------------------------------------------- entry points


def _parse(text: str):
    s = normalise(text)
    if not s:
        raise ParseError("empty answer")
    words = text_answer(s)
    if words is not None:
        return Text(words)
    tokens = tokenize(s)
    if not tokens:
        raise ParseError("empty answer")
    pm = [k for k, t in enumerate(tokens) if t == "\\pm"]
    if len(pm) > 1:
        raise ParseError("more than one \\pm")
    variants = [tokens] if not pm else [tokens[: pm[0]] + [sign] + tokens[pm[0] + 1 :] for sign in "+-"]
    items = []
    for variant in variants:  # 'x = 1 \pm \sqrt{2}' is the two answers 1 + sqrt(2) and 1 - sqrt(2)
        parser = _Parser(variant)
        items.extend(parser.items(()))
        if parser.peek() is not None:
            raise ParseError(f"unexpected {parser.peek()!r}")
    return items[0] if len(items) == 1 else Answers(tuple(items))


@functools.lru_cache(maxsize=8192)
def _parse_cached(text: str):
    try:
        return _parse(text), None
    except ParseError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever sympy raises on odd input makes it unreadable
        return None, f"cannot read ({type(exc).__name__})"


def parse_answer(text: str):
    """A sympy expression, or one of the containers above, for an answer such as '\\frac{3}{4}', '(1, 2)',
    '[0, 1)', '\\{1, 2\\}', 'x = 2', '2, 3'. Raises ParseError (with the reason) for anything else."""
    if len(text) > MAX_ANSWER_CHARS:
        raise ParseError(f"answer longer than {MAX_ANSWER_CHARS} characters")
    value, error = _parse_cached(text)
    if error is not None:
        raise ParseError(error)
    return value


def parse_math(text: str) -> sympy.Expr:
    """A sympy expression for a single-value answer such as '\\frac{3}{4}', '2\\sqrt{2}', '1,000 cm', 'x^2+1'."""
    value = parse_answer(text)
    if isinstance(value, DecimalLit):
        return value.value
    if not isinstance(value, sympy.Expr):
        raise ParseError(f"not a single expression but a {type(value).__name__}")
    return value
