"""Decide whether a parsed prediction equals a parsed gold answer, and say why in a few words.

Cheap, exact checks come first; sympy.simplify is the last resort, for values that cannot be evaluated
(the worker's timeout stays the last line of defence):
  numbers      exact: rationals compare as rationals, other numbers by sympy's exact is_zero, then to
               50 digits: 1/2^99 != 1/2^98, 1/2004! != 1/2006!, pi != pi + 10^-60 (no float chopping);
  decimals     the rounding policy below (MIN_ROUNDED_*);
  expressions  structural equality; values at random points, exact for polynomials and rational functions
               (two different ones agree there with negligible probability), to 50 digits for the rest,
               after which expand tries to prove it: x^2+2x+1 == (x+1)^2, sin^2 x + cos^2 x == 1;
  equations    same solution set: lhs-rhs are nonzero multiples of each other, after clearing denominators
               and repeated factors ((x-1)^2 = 0 is x = 1); in one variable, else the same real solutions;
  inequalities the same set of x ('x >= 2' == '[2, \\infty)'), or the same inequality scaled by c > 0;
  intervals    same brackets and endpoints; unions compare as sets of reals;
  sets, lists  '{1,2}' == '{2,1}'; a comma list ('2, 3', 'x=2 or x=3') is compared as a set too;
  tuples       in order: (1,2) != (2,1); a tuple is never equal to a list or a set;
  assignments  'x = 5' equals '5' when the other side is not an equation.
"""

from __future__ import annotations

import random
from fractions import Fraction

import sympy

from rlpractice.grading.answers import Answers, Bracket, DecimalLit, Relation, SetOf, Text, UnionOf

# Rounding policy: a written decimal with at least MIN_ROUNDED_DECIMALS places and MIN_ROUNDED_SIGNIFICANT
# significant digits also matches an exact value that rounds to it (0.33 for 1/3, 1.41 for sqrt(2); not
# 0.3 for 1/3, nor 0.00 for 1/2^99). Either side may be the rounded one. Set MIN_ROUNDED_DECIMALS to a
# large number to demand exact answers only.
MIN_ROUNDED_DECIMALS = 2
MIN_ROUNDED_SIGNIFICANT = 2
DIGITS = 50  # numbers that are not exact rationals are compared to this many significant digits first...
CLOSE = sympy.Rational(1, 10**40)  # ...and count as numerically equal within this relative difference
PROBES = 3  # random points at which two expressions with variables are compared
MAX_ITEMS = 20  # items in a set / list compared pairwise

_rng = random.Random(20240601)
_POINTS = [sympy.Rational(_rng.randint(-3_000_000, 3_000_000), _rng.randint(1_000_000, 2_000_000)) for _ in range(64)]


def rounded_match(a: Fraction, a_places: int | None, b: Fraction, b_places: int | None) -> bool:
    """The rounding policy on exact fractions: is one side a written decimal that the other rounds to?"""
    for dec, places, other in ((a, a_places, b), (b, b_places, a)):
        if places is None or places < MIN_ROUNDED_DECIMALS:
            continue
        if len(str(abs(dec) * 10**places).lstrip("0")) < MIN_ROUNDED_SIGNIFICANT:  # 0.00 is no estimate
            continue
        if abs(dec - other) * 2 * 10**places <= 1:  # within half a unit of the last written place
            return True
    return False


def _rounded(p, g) -> bool:
    """The rounding policy when one side may be irrational (compared at DIGITS digits)."""
    if not (isinstance(p, DecimalLit) or isinstance(g, DecimalLit)):
        return False
    pv, gv = _num(p), _num(g)
    if not (pv.is_real and gv.is_real):
        return False

    def frac(x) -> Fraction:
        if x.is_Rational:
            return Fraction(int(x.p), int(x.q))
        return Fraction(str(sympy.N(x, DIGITS)))

    return rounded_match(frac(pv), getattr(p, "places", None), frac(gv), getattr(g, "places", None))


def _num(v):
    return v.value if isinstance(v, DecimalLit) else v


def _show(v) -> str:
    """A short text for a reason (huge numbers are not printed)."""
    if not isinstance(v, (sympy.Basic, DecimalLit)):
        return _kind(v)
    if isinstance(v, sympy.Rational) and max(abs(v.p), v.q) > 10**30:
        return "a large number"
    try:
        s = str(_num(v))
    except ValueError:
        return "a large number"
    return s if len(s) <= 40 else s[:37] + "..."


# ---------------------------------------------------------------- numbers and expressions


def _close(a: sympy.Expr, b: sympy.Expr) -> bool | None:
    """Numerically equal to DIGITS digits? None when a value cannot be evaluated."""
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return None  # never hand sympy anything else: it would sympify (and eval) its text
    try:
        av, bv = sympy.N(a, DIGITS), sympy.N(b, DIGITS)
        if not (av.is_number and bv.is_number) or av.has(sympy.nan, sympy.zoo) or bv.has(sympy.nan, sympy.zoo):
            return None
        diff, scale = abs(sympy.N(av - bv, DIGITS)), max(abs(av), abs(bv))
        return bool(diff <= CLOSE * scale)
    except (TypeError, ValueError, ArithmeticError):
        return None


def _numbers_equal(p, g, d) -> tuple[bool, str]:
    """Two numbers without variables whose difference d is not an explicit rational."""
    zero = d.is_zero  # sympy's exact reasoning: cheap for numbers, decides sqrt(8) - 2sqrt(2) and pi - 22/7
    if zero is True:
        return True, "equal"
    close = _close(_num(p), _num(g))
    if zero is False or close is False:
        if _rounded(p, g):
            return True, "equal to the stated decimals"
        return False, "different" if close is False else "different (by less than the numerical precision)"
    if close is None or sympy.expand(d) == 0:  # cannot evaluate: the last resort is simplify
        ok = close is not None or sympy.simplify(d) == 0
        return ok, "equal" if ok else "undecided (not evaluable)"
    return True, f"equal to {DIGITS} digits"


def expressions_equal(p, g) -> tuple[bool, str]:
    pv, gv = _num(p), _num(g)
    if pv == gv:
        return True, "equal"
    if pv.has(sympy.oo, -sympy.oo) or gv.has(sympy.oo, -sympy.oo):
        return False, "different"
    d = pv - gv
    if d == 0:
        return True, "equal"
    if d.is_Rational:  # both exact rationals (or their difference is): exact verdict
        return (True, "equal to the stated decimals") if _rounded(p, g) else (False, "different (exact)")
    symbols = sorted(d.free_symbols, key=str)
    if not symbols:
        return _numbers_equal(p, g, d)
    # Random points. For polynomials and rational functions with rational coefficients the values are exact
    # rationals, and two different functions agree at PROBES random points with negligible probability
    # (Schwartz-Zippel); for everything else the points reject cheaply what differs.
    exact, evaluated = True, 0
    for k in range(PROBES):
        point = {s: _POINTS[(7 * k + j) % len(_POINTS)] for j, s in enumerate(symbols)}
        dv = d.xreplace(point)
        if dv.is_Rational:
            if dv != 0:
                return False, f"differ at {_where(point)}"
            evaluated += 1
            continue
        exact = False
        close = _close(pv.xreplace(point), gv.xreplace(point))
        if close is False:
            return False, f"differ at {_where(point)}"
        evaluated += close is True
    if exact:
        return True, f"equal (identical at {PROBES} random points, exact)"
    if sympy.expand(d) == 0:
        return True, "equal (expand)"
    if evaluated >= 2:
        return True, f"equal at {evaluated} random points to {DIGITS} digits"
    ok = sympy.simplify(d) == 0  # hardly evaluable anywhere: the last resort
    return ok, "equal (simplify)" if ok else "undecided (not evaluable)"


def _where(point: dict) -> str:
    return ", ".join(f"{s}={float(v):.3g}" for s, v in point.items())


# ---------------------------------------------------------------- equations and inequalities


def _numerator(d):
    return sympy.numer(sympy.together(d))  # clear denominators: y = 1/x has the solutions of xy = 1


def _multiple(a, b, symbols: list) -> bool:
    """Is a a nonzero constant multiple of b? Exact rational values at random points decide cheaply
    (Schwartz-Zippel, as for expressions); otherwise sympy.cancel does."""
    ratios = set()
    for k in range(PROBES):
        point = {s: _POINTS[(7 * k + j) % len(_POINTS)] for j, s in enumerate(symbols)}
        av, bv = a.xreplace(point), b.xreplace(point)
        if not (av.is_Rational and bv.is_Rational):
            ratio = sympy.cancel(a / b)
            return bool(ratio.is_number and ratio != 0 and ratio.is_finite)
        if bv == 0 or av == 0:
            if av != bv:
                return False
            continue
        ratios.add(av / bv)
    return len(ratios) == 1


def _radical(d):
    """d without the repeated factors visible without expanding: 3(x-1)^2(x+2) -> (x-1)(x+2)."""
    factors = [f.base if f.is_Pow and f.exp.is_Integer and f.exp > 0 else f for f in sympy.Mul.make_args(d)]
    return sympy.Mul(*[f for f in factors if not f.is_number])


def _degree(e) -> int:
    """An upper bound of the total degree, without expanding (which can take forever: (x+y+z)^100)."""
    if e.is_Add:
        return max(_degree(a) for a in e.args)
    if e.is_Mul:
        return sum(_degree(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return _degree(e.base) * int(e.exp)
    return 0 if e.is_number else 1


MAX_SQF_DEGREE = 30  # repeated factors hidden in expanded polynomials are looked for up to this degree


def equations_equal(p: Relation, g: Relation) -> tuple[bool, str]:
    dp, dg = _numerator(p.sides[0] - p.sides[1]), _numerator(g.sides[0] - g.sides[1])
    if dp == 0 or dg == 0 or not (dp.free_symbols and dg.free_symbols):
        return dp == dg, "equations without unknowns"
    symbols = sorted(dp.free_symbols | dg.free_symbols, key=str)
    if _multiple(dp, dg, symbols):
        return True, "same equation (up to a factor)"
    # Repeated factors do not change the solutions: (x-1)^2 = 0 has those of x = 1.
    if _multiple(_radical(dp), _radical(dg), symbols):
        return True, "same solution set"
    if max(_degree(dp), _degree(dg)) <= MAX_SQF_DEGREE:
        try:
            sp, sg = (sympy.Poly(d, *symbols).sqf_part().as_expr() for d in (dp, dg))
            if _multiple(sp, sg, symbols):
                return True, "same solution set"
            return False, "different solutions" if len(symbols) == 1 else "different equations (not multiples)"
        except sympy.PolynomialError:
            pass
    if len(symbols) == 1:  # one unknown, not a polynomial: compare the real solution sets
        x = symbols[0]
        solved_p, solved_g = (sympy.solveset(d, x, sympy.S.Reals) for d in (dp, dg))
        if isinstance(solved_p, sympy.FiniteSet) and isinstance(solved_g, sympy.FiniteSet):
            return _collections_equal(SetOf(tuple(solved_p)), SetOf(tuple(solved_g)))
        return solved_p == solved_g, "same solution set" if solved_p == solved_g else "different solution sets"
    return False, "different equations"


_LESS = {"<": sympy.StrictLessThan, "<=": sympy.LessThan, ">": sympy.StrictGreaterThan, ">=": sympy.GreaterThan}


def _solve(rel, x):
    """The real x with `rel` true: directly when linear in x, else by sympy's inequality solver."""
    f = rel.lhs - rel.rhs  # f op 0
    c = f.diff(x)
    if c.is_number and c.is_extended_real and c != 0 and x not in (rest := f - c * x).free_symbols:
        x0, op = -rest / c, type(rel)
        if c < 0:  # dividing by a negative number flips the inequality
            op = {sympy.StrictLessThan: sympy.StrictGreaterThan, sympy.LessThan: sympy.GreaterThan,
                  sympy.StrictGreaterThan: sympy.StrictLessThan, sympy.GreaterThan: sympy.LessThan}[op]
        if op in (sympy.StrictLessThan, sympy.LessThan):
            return sympy.Interval(-sympy.oo, x0, right_open=op is sympy.StrictLessThan)
        return sympy.Interval(x0, sympy.oo, left_open=op is sympy.StrictGreaterThan)
    return sympy.solve_univariate_inequality(rel, x, relational=False)


def _inequality_set(r: Relation):
    """The real x satisfying an inequality (chain) in one variable, or None."""
    symbols = set().union(*(s.free_symbols for s in r.sides))
    if len(symbols) != 1 or not set(r.ops) <= set(_LESS):
        return None
    x = symbols.pop()
    xr = sympy.Dummy("x", real=True)
    result = sympy.S.Reals
    for k, op in enumerate(r.ops):
        rel = _LESS[op](r.sides[k].xreplace({x: xr}), r.sides[k + 1].xreplace({x: xr}))
        result = result.intersect(_solve(rel, xr))
    return result


def _positive_form(r: Relation) -> list[tuple[object, bool]]:
    """'a < b' as (b - a, strict): the expression that is > 0 (strict) or >= 0."""
    out = []
    for k, op in enumerate(r.ops):
        a, b = r.sides[k], r.sides[k + 1]
        out.append((b - a, op == "<") if op in ("<", "<=") else (a - b, op == ">"))
    return out


def _relations_equal(p: Relation, g: Relation) -> tuple[bool, str]:
    if p.ops == g.ops and p.ops in (("=",), ("!=",)):
        return equations_equal(p, g)  # x != 2 excludes what x = 2 solves
    if "=" in p.ops + g.ops or "!=" in p.ops + g.ops:
        return False, "different relations"
    sp, sg = _inequality_set(p), _inequality_set(g)
    if sp is not None and sg is not None:
        return _sets_equal(sp, sg)
    fp, fg = _positive_form(p), _positive_form(g)
    if len(fp) == len(fg) and all(
        s1 == s2 and (r := sympy.cancel(e1 / e2)).is_number and r.is_positive
        for (e1, s1), (e2, s2) in zip(fp, fg, strict=True)
    ):
        return True, "same inequality (up to a positive factor)"
    return False, "different inequalities"


# ---------------------------------------------------------------- sets of reals, tuples, collections


def _as_set(v):
    """A sympy set of reals for an interval, union, inequality or finite set; None when v is not one."""
    if isinstance(v, Bracket) and len(v.items) == 2:
        a, b = (_num(x) for x in v.items)
        if all(isinstance(e, sympy.Expr) and e.is_extended_real for e in (a, b)) and (a < b) == sympy.true:
            return sympy.Interval(a, b, v.left == "(", v.right == ")")
        return None
    if isinstance(v, UnionOf):
        parts = [_as_set(x) for x in v.parts]
        return None if any(x is None for x in parts) else sympy.Union(*parts)
    if isinstance(v, (SetOf, Answers)):
        items = [_num(x) for x in v.items]
        if all(isinstance(x, sympy.Expr) and x.is_number for x in items):
            return sympy.FiniteSet(*items)
        parts = [_as_set(x) for x in v.items]  # 'x < 0 or x > 1'
        return None if any(x is None for x in parts) else sympy.Union(*parts)
    if isinstance(v, Relation):
        return _inequality_set(v)
    return None


def _sets_equal(a, b) -> tuple[bool, str]:
    if a == b or (sympy.Complement(a, b) == sympy.S.EmptySet and sympy.Complement(b, a) == sympy.S.EmptySet):
        return True, "same set"
    return False, "different sets"


def _brackets_equal(p: Bracket, g: Bracket) -> tuple[bool, str]:
    if (p.left, p.right) != (g.left, g.right):
        return False, f"brackets {p.left}{p.right} vs {g.left}{g.right}"
    if len(p.items) != len(g.items):
        return False, f"{len(p.items)} vs {len(g.items)} entries"
    for k, (a, b) in enumerate(zip(p.items, g.items, strict=True)):
        ok, why = equivalent(a, b)
        if not ok:
            return False, f"entry {k + 1}: {why}"
    return True, "same entries in order"


def _collections_equal(p, g) -> tuple[bool, str]:
    """Unordered: every predicted item is among the gold items and every gold item is predicted."""
    ps = list(p.items) if isinstance(p, (SetOf, Answers)) else [p]
    gs = list(g.items) if isinstance(g, (SetOf, Answers)) else [g]
    if len(ps) > MAX_ITEMS or len(gs) > MAX_ITEMS:
        return False, f"more than {MAX_ITEMS} items"
    found = set()
    for a in ps:
        hits = [k for k, b in enumerate(gs) if equivalent(a, b)[0]]
        if not hits:
            return False, f"{_show(a)} is not among the gold answers"
        found.update(hits)
    if len(found) < len(gs):
        return False, f"missing {_show(gs[min(set(range(len(gs))) - found)])}"
    return True, "same set of answers"


def _kind(v) -> str:
    if isinstance(v, Relation):
        return "an equation" if v.ops == ("=",) else "an inequality"
    names = {Bracket: "a tuple/interval", SetOf: "a set", Answers: "a list", UnionOf: "a union", Text: "text"}
    return names.get(type(v), "a value")


def equivalent(p, g) -> tuple[bool, str]:
    """(equal?, short reason) for a parsed prediction p and parsed gold g."""
    p = p.items[0] if isinstance(p, Answers) and len(p.items) == 1 else p
    g = g.items[0] if isinstance(g, Answers) and len(g.items) == 1 else g
    if isinstance(p, Text) or isinstance(g, Text):
        if isinstance(p, Text) and isinstance(g, Text):
            return (True, "same words") if p.key == g.key else (False, "different words")
        return False, f"{_kind(p)} vs {_kind(g)}"
    if _is_assignment(p) and not isinstance(g, Relation):
        p = p.sides[1]  # 'x = 5' answers '5'
    if _is_assignment(g) and not isinstance(p, Relation):
        g = g.sides[1]
    if isinstance(p, UnionOf) or isinstance(g, UnionOf):
        sp, sg = _as_set(p), _as_set(g)
        return _sets_equal(sp, sg) if sp is not None and sg is not None else (False, f"{_kind(p)} vs {_kind(g)}")
    if isinstance(p, (SetOf, Answers)) or isinstance(g, (SetOf, Answers)):
        return _collections_equal(p, g)
    if isinstance(p, Relation) and isinstance(g, Relation):
        return _relations_equal(p, g)
    if isinstance(p, Bracket) and isinstance(g, Bracket):
        return _brackets_equal(p, g)
    if isinstance(p, (Bracket, Relation)) or isinstance(g, (Bracket, Relation)):
        sp, sg = _as_set(p), _as_set(g)
        return _sets_equal(sp, sg) if sp is not None and sg is not None else (False, f"{_kind(p)} vs {_kind(g)}")
    return expressions_equal(p, g)


def _is_assignment(v) -> bool:
    return (isinstance(v, Relation) and v.ops == ("=",) and isinstance(v.sides[0], sympy.Symbol)
            and v.sides[0] not in v.sides[1].free_symbols)
