"""From answer text to tokens: unicode and LaTeX are rewritten into a small plain syntax, then cut up.

Policies decided here (all documented in verifiers/math.py too):
- units and words after a number are dropped: '10 cm', '10\\text{ cm}^2', '12 apples' read as the number;
- percent and degree signs are dropped: '50\\%' is 50 and '30^\\circ' is 30 (no x100 or radian guessing);
- thousands separators: '1,000', '1{,}000', '1\\,000' and '1 000' are 1000 (a comma followed by exactly three
  digits, after a group of at most three); '1, 000' (with a space) is a list of two answers;
- unicode: minus signs, x, /, pi, sqrt, infinity, <=, superscript digits, full-width and other scripts'
  digits are mapped to their ASCII forms; invisible format characters are removed;
- letters: known words become commands ('pi', 'sqrt', 'sin', 'or'), runs of up to three other letters are
  products of variables ('2xy'), longer unknown words are rejected ('eval', 'import', 'lambda').
"""

from __future__ import annotations

import re
import unicodedata

from rlpractice.grading.answers import ParseError

MAX_DEPTH = 40  # nesting of brackets, commands and powers (keeps the recursion far from Python's limit)
MAX_NUMBER_DIGITS = 100  # digits of one written number

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SYMBOLS = {
    "−": "-", "–": "-", "—": "-", "‐": "-", "×": "*", "·": "*", "⋅": "*", "∙": "*", "÷": "/", "⁄": "/",
    "π": r"\pi ", "∞": r"\infty ", "√": r"\usqrt ", "≤": r"\le ", "≥": r"\ge ", "≠": r"\ne ", "∪": r"\cup ",
    "±": r"\pm ", "∈": r"\in ", "∅": r"\emptyset ", "°": r"^\circ ", "ℝ": r"\mathbb{R}",
}
_SYMBOL_RE = re.compile("|".join(map(re.escape, _SYMBOLS)))

# \text{...}-like wrappers: their contents are kept (then words after a number are dropped as units).
_TEXT_RE = re.compile(
    r"\\(?:text|textrm|textbf|textit|textnormal|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
    r"(\s*\^\s*\{?\s*[23]\s*\}?)?"  # the exponent of a unit: \text{cm}^2
)
_LATEX = [
    (r"\\\$|\$", " "),  # math delimiters and escaped dollar signs (currency)
    (r"\\[()\[\]]", " "),  # \( \) \[ \] delimiters
    (r"\\(?:left|right)\.|\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![A-Za-z])", ""),
    (r"\\(?:displaystyle|textstyle)(?![A-Za-z])", ""),
    (r"([0-9])(?:\{,\}|\\,)([0-9]{3})(?![0-9])", r"\1,\2"),  # 1{,}000 and 1\,000 are thousands separators
    (r"\\[,;:! ]|\\q?quad(?![A-Za-z])|~", " "),
    (r"\\[dtc]frac(?![A-Za-z])", r"\\frac"),
    (r"\\(?:cdot|times|ast)(?![A-Za-z])", "*"),
    (r"\\div(?![A-Za-z])", "/"),
    (r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])", " "),  # degrees: the number stays
    (r"\\%|%", " "),  # percent: '50%' is compared as 50 (no guessing of x100 or /100)
    (r"\\(?:leq?|leqslant)(?![A-Za-z])|<=", r" \\le "),
    (r"\\(?:geq?|geqslant)(?![A-Za-z])|>=", r" \\ge "),
    (r"\\(?:neq?)(?![A-Za-z])|!=", r" \\ne "),
    (r"\\lt(?![A-Za-z])", "<"),
    (r"\\gt(?![A-Za-z])", ">"),
    (r"\\(?:lvert|rvert|vert|mid)(?![A-Za-z])", "|"),
    (r"\\mathbb\s*\{?\s*R\s*\}?", r" \\Reals "),
    (r"\*\*", "^"),
]
_LATEX = [(re.compile(p), r) for p, r in _LATEX]
# Thousands separators: groups of exactly three digits after a first group of one to three.
_THOUSANDS = re.compile(
    r"(?<![0-9.,])[0-9]{1,3}(?:,[0-9]{3})+(?![0-9]|,[0-9])"  # 1,000,000
    r"|(?<![0-9.])[0-9]{1,3}(?: [0-9]{3})+(?![0-9])"  # 1 000 000
)
# Words after a number, bracket or closing brace: a unit ('10 cm', '5 m^2', '12 apples', '3 sq. ft').
_UNIT = re.compile(r"(?<=[0-9)}\]|])\s+([A-Za-z]{2,}\.?(?:[\s/]+[A-Za-z]+\.?)*)\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$")
# Words that are maths, not units, when they follow a number: '2 pi', '3 \\sin x', '2 or 3'.
_NOT_UNITS = {"pi", "e", "i", "or", "and", "oo", "infty", "infinity", "sqrt", "abs", "ln", "log", "exp"} | {
    f"{arc}{f}{h}" for arc in ("", "arc") for f in ("sin", "cos", "tan", "cot", "sec", "csc") for h in ("", "h")
}
_WORDS = re.compile(r"[A-Za-z]+\.?(?:[\s/]+[A-Za-z]+\.?)*")
_AFTER_NUMBER = set("0123456789)}]|")


def _unicode(s: str) -> str:
    s = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + m.group().translate(_SUPERSCRIPTS) + "}", s)
    s = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m.group()], s)
    if s.isascii():
        return s
    s = unicodedata.normalize("NFKC", s)  # full-width forms, mathematical alphanumerics, ligatures, '½'
    s = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m.group()], s)
    out = []
    for c in s:
        if c.isascii():
            out.append(c)
        elif unicodedata.category(c) == "Nd":
            out.append(str(unicodedata.decimal(c)))  # other scripts' digits: '٣' is 3
        elif unicodedata.category(c) in ("Cf", "Zs", "Zl", "Zp"):
            out.append(" " if c.isspace() else "")  # invisible format characters (zero-width space...)
        else:
            out.append(c)  # left for the tokenizer to reject
    return "".join(out)


def _text(m: re.Match) -> str:
    """\\text{...}: a word after a number is a unit and is dropped ('5\\text{ m}^2'); else the contents stay."""
    words = m.group(1).strip()
    before = m.string[: m.start()].rstrip()
    if _WORDS.fullmatch(words) and words.lower() not in _NOT_UNITS and before[-1:] in _AFTER_NUMBER:
        return " "
    return f" {m.group(1)} {m.group(2) or ''}"


def normalise(s: str) -> str:
    """Plain syntax for the parser: '\\dfrac{1}{2}\\text{ cm}' -> '\\frac{1}{2}', '1,000' -> '1000'."""
    s = _unicode(s)
    for _ in range(3):  # nested \text{\textbf{...}}
        s2 = _TEXT_RE.sub(_text, s)
        if s2 == s:
            break
        s = s2
    for pattern, repl in _LATEX:
        s = pattern.sub(repl, s)
    s = _THOUSANDS.sub(lambda m: m.group().replace(",", "").replace(" ", ""), s)
    s = s.strip()
    unit = _UNIT.search(s)
    if unit and not {w.rstrip(".").lower() for w in unit.group(1).split()} & _NOT_UNITS:
        s = s[: unit.start()]
    return s.strip()


# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[0-9]+\.[0-9]+e[+-]?[0-9]+|[0-9]+e[0-9]+|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
    r"|(?P<cmd>\\[A-Za-z]+|\\[{}])|(?P<word>[A-Za-z]+)|(?P<op>!!|[-+*/^()\[\]{},;=<>!_|]))"
)
FUNCTIONS = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
             "ln", "log", "exp", "abs"}
_WORD_TOKENS = {"pi": "\\pi", "oo": "\\infty", "inf": "\\infty", "infty": "\\infty", "infinity": "\\infty",
                "sqrt": "\\usqrt", "or": ",", "and": ",", **{f: "\\" + f for f in FUNCTIONS}}
GREEK = set(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta kappa lambda mu nu xi rho sigma tau "
    "upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
_OPEN, _CLOSE = {"(", "[", "{", "\\{"}, {")", "]", "}", "\\}"}


def tokenize(s: str) -> list[str]:
    """Tokens of normalised text: numbers, \\commands, single letters, operators; ParseError otherwise."""
    tokens, pos, depth = [], 0, 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise ParseError(f"unexpected character {s[pos:].lstrip()[0]!r}")
        pos = m.end()
        tok = m.group(m.lastgroup)
        if m.lastgroup == "num" and len(tok) > MAX_NUMBER_DIGITS:
            raise ParseError(f"number longer than {MAX_NUMBER_DIGITS} digits")
        if m.lastgroup == "word":
            if tok in _WORD_TOKENS:
                tokens.append(_WORD_TOKENS[tok])
            elif len(tok) > 3:  # 'eval', 'import', 'system': words, not products of variables
                raise ParseError(f"unknown word {tok!r}")
            else:
                tokens.extend(tok)  # '2xy' is 2*x*y
            continue
        depth += (tok in _OPEN) - (tok in _CLOSE)
        if depth > MAX_DEPTH:
            raise ParseError(f"brackets nested deeper than {MAX_DEPTH}")
        tokens.append(tok)
    return tokens


_TEXT_ANSWER = re.compile(r"[A-Za-z][A-Za-z'\- ]*\.?")


def text_answer(s: str) -> str | None:
    """The lower-cased words of a word answer ('Monday', 'no solution'); None for maths ('x', '2y', 'pi')."""
    words = re.findall(r"[A-Za-z]+", s)
    if _TEXT_ANSWER.fullmatch(s) and any(len(w) > 1 and w not in _WORD_TOKENS for w in words):
        return " ".join(words).lower()
    return None
