"""The built-in math textbook: procedurally generated, seeded, no downloads.

Arithmetic word problems in the spirit of "Xiao Ming buys apples and oranges", at four levels:
  1. one operation            2. two steps (buy two kinds of things)
  3. three steps (pay and get change, share equally)    4. fractions (answers have several forms)

The textbook has four parts (see `build_textbook`):
  exposition  -> pretraining text (explanations, facts, and worked examples as a book prints them)
  worked      -> SFT: question + solution ending in "Answer: x"; as in a real book, some solutions show
                 every step and some (`answer_only`) print only the answer, like the key at the back
  practice    -> RL: question + final answer only
  heldout     -> evaluation only; never appears in any training part

Why answer-only solutions matter: a student who imitates both styles sometimes answers a three-step
problem in one leap, and a tiny model that leaps is usually wrong. Nobody tells it which style to use;
practice does: the verifier rewards correct answers, so RL learns to show its work. That is the kind
of lesson RL teaches well (it is about the policy, so it transfers to every problem), and it is why the
default run's pass rate climbs while the completions get longer.

Held-out problems are chosen by a hash of the question text, so no seed or size setting can ever
leak an evaluation question into training: generators for the training parts reject that bucket.
"""

from __future__ import annotations

import random
from fractions import Fraction
from math import gcd

from rlpractice.textbook.problems import BookSizes, Problem, Textbook, build_book, distinct_problems, format_solution

NAMES = ["Xiao Ming", "Xiao Hong", "Li Lei", "Han Meimei", "Anna", "Tom", "Wang Fang", "Sara"]
ITEMS = ["apples", "oranges", "pencils", "books", "pears", "stickers", "eggs", "cards"]
CONTAINERS = ["bags", "boxes", "baskets", "packs"]
WHOLES = ["cake", "pizza", "rope", "bottle of juice", "chocolate bar"]
LEVELS = (1, 2, 3, 4)


def fraction_text(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


# ---------------------------------------------------------------- problem templates, one per kind
# Each returns (question, steps, answer_text). Numbers are kept small (sums within 60, products of one-digit
# numbers): the default model is tiny, and a small set of arithmetic facts is one practice can cover.


def _one_step(r: random.Random) -> tuple[str, list[str], str]:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    kind = r.choice(["add", "sub", "mul", "div"])
    if kind == "add":
        a, b = r.randint(2, 20), r.randint(2, 20)
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        return q, [f"{a} + {b} = {a + b}."], str(a + b)
    if kind == "sub":
        a = r.randint(5, 30)
        b = r.randint(1, a - 1)
        q = f"{name} has {a} {item} and gives away {b}. How many {item} are left?"
        return q, [f"{a} - {b} = {a - b}."], str(a - b)
    if kind == "mul":
        a, b = r.randint(2, 9), r.randint(2, 9)
        box = r.choice(CONTAINERS)
        q = f"{name} has {a} {box} with {b} {item} in each. How many {item} is that?"
        return q, [f"{a} * {b} = {a * b}."], str(a * b)
    b, c = r.randint(2, 9), r.randint(2, 9)
    a = b * c
    q = f"{name} shares {a} {item} equally among {b} friends. How many {item} does each friend get?"
    return q, [f"{a} / {b} = {c}."], str(c)


def _two_steps(r: random.Random) -> tuple[str, list[str], str]:
    name = r.choice(NAMES)
    it1, it2 = r.sample(ITEMS, 2)
    a, p, b, q_ = r.randint(2, 5), r.randint(2, 6), r.randint(2, 5), r.randint(2, 6)
    if r.random() < 0.5:
        q = (
            f"{name} buys {a} {it1} at {p} yuan each and {b} {it2} at {q_} yuan each. "
            f"How many yuan does {name} spend?"
        )
        s = [f"{a} * {p} = {a * p}.", f"{b} * {q_} = {b * q_}.", f"{a * p} + {b * q_} = {a * p + b * q_}."]
        return q, s, str(a * p + b * q_)
    total = a * p + r.randint(1, 20)
    q = f"{name} has {total} yuan and buys {a} {it1} at {p} yuan each. How many yuan are left?"
    return q, [f"{a} * {p} = {a * p}.", f"{total} - {a * p} = {total - a * p}."], str(total - a * p)


def _three_steps(r: random.Random) -> tuple[str, list[str], str]:
    name = r.choice(NAMES)
    it1, it2 = r.sample(ITEMS, 2)
    a, p, b, q_ = r.randint(2, 4), r.randint(2, 6), r.randint(2, 4), r.randint(2, 6)
    spent = a * p + b * q_
    if r.random() < 0.5:
        bill = r.choice([b_ for b_ in (50, 100) if b_ > spent] or [100])
        q = (
            f"{name} buys {a} {it1} at {p} yuan each and {b} {it2} at {q_} yuan each, "
            f"and pays with {bill} yuan. How much change does {name} get?"
        )
        s = [f"{a} * {p} = {a * p}.", f"{b} * {q_} = {b * q_}.", f"{a * p} + {b * q_} = {spent}.",
             f"{bill} - {spent} = {bill - spent}."]
        return q, s, str(bill - spent)
    k, each = r.randint(2, 5), r.randint(2, 9)
    total = k * each
    extra = r.randint(1, total - 1)
    q = (
        f"{name} has {total - extra} {it1} and picks {extra} more, "
        f"then puts them equally into {k} {r.choice(CONTAINERS)}. How many {it1} are in each?"
    )
    s = [f"{total - extra} + {extra} = {total}.", f"{total} / {k} = {each}."]
    return q, s, str(each)


def _fractions(r: random.Random) -> tuple[str, list[str], str]:
    name, whole = r.choice(NAMES), r.choice(WHOLES)
    kind = r.choice(["same", "unlike", "of", "left"])
    if kind in ("same", "left"):
        d = r.randint(3, 12)
        a, b = r.randint(1, d - 1), r.randint(1, d - 1)
        if kind == "left" or a + b > d:
            a, b = max(a, b), min(a, b)
            res = Fraction(d - a, d)
            q = f"{name} has a {whole} and uses {a}/{d} of it. What fraction of the {whole} is left?"
            s = [f"1 = {d}/{d}.", f"{d}/{d} - {a}/{d} = {d - a}/{d}."]
            if res.denominator != d:
                s.append(f"{d - a}/{d} = {fraction_text(res)}.")
            return q, s, fraction_text(res)
        res = Fraction(a + b, d)
        q = f"{name} eats {a}/{d} of a {whole} and then {b}/{d} more. What fraction of the {whole} is eaten?"
        s = [f"{a}/{d} + {b}/{d} = {a + b}/{d}."]
        if res.denominator != d:
            s.append(f"{a + b}/{d} = {fraction_text(res)}.")
        return q, s, fraction_text(res)
    if kind == "unlike":
        d1 = r.choice([2, 3, 4, 5])
        d2 = d1 * r.choice([2, 3])
        a, b = 1, r.randint(1, d2 - d2 // d1 - 1)
        res = Fraction(a, d1) + Fraction(b, d2)
        up = d2 // d1
        q = f"{name} drinks {a}/{d1} of a {whole} and then {b}/{d2} of it. How much of the {whole} is gone?"
        s = [f"{a}/{d1} = {up}/{d2}.", f"{up}/{d2} + {b}/{d2} = {up + b}/{d2}."]
        if res.denominator != d2:
            s.append(f"{up + b}/{d2} = {fraction_text(res)}.")
        return q, s, fraction_text(res)
    d = r.choice([2, 3, 4, 5])
    n = r.randint(1, d - 1)
    total = d * r.randint(2, 9)
    item = r.choice(ITEMS)
    q = f"{name} has {total} {item} and gives away {n}/{d} of them. How many {item} does {name} give away?"
    s = [f"{total} / {d} = {total // d}.", f"{total // d} * {n} = {total // d * n}."]
    return q, s, str(total // d * n)


TEMPLATES = {1: _one_step, 2: _two_steps, 3: _three_steps, 4: _fractions}


def make_problem(r: random.Random, level: int) -> Problem:
    question, steps, answer = TEMPLATES[level](r)
    return Problem(question=question, answer=answer, solution=format_solution(steps, answer), level=level,
                   steps=tuple(steps))


def generate(seed: int, count: int, heldout: bool, levels: tuple[int, ...] = LEVELS) -> list[Problem]:
    return distinct_problems(make_problem, seed, count, heldout, tuple(levels))


# ---------------------------------------------------------------- exposition (pretraining text)


def _exposition_paragraph(r: random.Random) -> str:
    kind = r.choice(["add", "sub", "mul", "div", "frac_same", "frac_equiv", "frac_of", "table"])
    if kind == "add":
        a, b = r.randint(1, 60), r.randint(1, 60)
        return (f"Adding puts two amounts together. If you have {a} and get {b} more, "
                f"you have {a} + {b} = {a + b}.")
    if kind == "sub":
        a = r.randint(5, 100)
        b = r.randint(1, a)
        return f"Subtracting takes an amount away. {a} take away {b} leaves {a} - {b} = {a - b}."
    if kind == "mul":
        a, b = r.randint(2, 12), r.randint(2, 12)
        return (f"Multiplying counts equal groups. {a} groups of {b} make {a} * {b} = {a * b}, "
                f"and {b} groups of {a} make {b} * {a} = {a * b} too.")
    if kind == "div":
        b, c = r.randint(2, 10), r.randint(2, 10)
        return f"Dividing shares equally. {b * c} shared among {b} gives {b * c} / {b} = {c} each."
    if kind == "frac_same":
        d = r.randint(3, 12)
        a, b = r.randint(1, d - 1), r.randint(1, d - 1)
        return (f"Fractions with the same bottom number add on top: {a}/{d} + {b}/{d} = {a + b}/{d}. "
                f"A whole is {d}/{d}, so {d}/{d} - {a}/{d} = {d - a}/{d}.")
    if kind == "frac_equiv":
        a, d = r.randint(1, 5), r.randint(2, 6)
        k = r.randint(2, 4)
        f = Fraction(a, d)
        g = gcd(a, d)
        return (f"A fraction keeps its value when top and bottom are multiplied by the same number: "
                f"{a}/{d} = {a * k}/{d * k}. Dividing both by {g} gives the simplest form, "
                f"{a}/{d} = {fraction_text(f)}.")
    if kind == "frac_of":
        d = r.randint(2, 5)
        n = r.randint(1, d - 1)
        t = d * r.randint(2, 9)
        return (f"To take {n}/{d} of {t}, divide by {d} and multiply by {n}: "
                f"{t} / {d} = {t // d}, {t // d} * {n} = {t // d * n}.")
    a = r.randint(2, 9)
    return "Times table of " + str(a) + ": " + " ".join(f"{a} * {b} = {a * b}." for b in range(1, 10))


def build_textbook(seed: int, exposition_paragraphs: int, worked: int, practice: int, heldout: int,
                   levels: tuple[int, ...] = LEVELS, answer_only_fraction: float = 0.0) -> Textbook:
    sizes = BookSizes(exposition_paragraphs, worked, practice, heldout)
    return build_book(make_problem, _exposition_paragraph, seed, sizes, levels, answer_only_fraction)
