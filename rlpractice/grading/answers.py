"""What a parsed answer can be besides a sympy expression, and the parser's error.

equivalence.py decides how each of these compares (e.g. a SetOf ignores order, a Bracket does not).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy


class ParseError(ValueError):
    """The text is not a math answer this parser accepts (the reason is the message)."""


@dataclass(frozen=True)
class DecimalLit:
    """A lone written decimal such as '0.33': its exact value and places, for the rounding policy."""

    value: sympy.Rational
    places: int


@dataclass(frozen=True)
class Bracket:
    """Two or more items in brackets: a point/tuple '(1, 2)' or an interval '[0, 1)'."""

    left: str
    items: tuple
    right: str


@dataclass(frozen=True)
class SetOf:
    items: tuple


@dataclass(frozen=True)
class UnionOf:
    parts: tuple


@dataclass(frozen=True)
class Relation:
    """'a = b', 'x < 3', '0 <= x < 1': ops are '=', '<', '>', '<=', '>=', '!='."""

    ops: tuple
    sides: tuple


@dataclass(frozen=True)
class Answers:
    """Several answers separated by commas, 'or', 'and' (policy: compared as a set)."""

    items: tuple


@dataclass(frozen=True)
class Text:
    """A word answer such as 'Monday' or 'no solution', compared by its lower-cased words."""

    key: str
