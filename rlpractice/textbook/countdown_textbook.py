"""The built-in Countdown textbook: make a target number from given numbers, each used once.

"Use the numbers 3, 5, 7 once each with + - * / to make 22."  ->  "5 * 3 = 15. 15 + 7 = 22. Answer: 5*3+7"

Levels, by how many numbers there are to combine:
  1. two numbers, one step       2. three numbers, two steps
  3. four numbers, three steps (half as a chain, half as two pairs: (a+b)*(c-d))

Every problem is built forwards from a solution, so each one has at least one. Every step gives a whole
number from 1 to MAX_VALUE (no negatives, no fractions, multiply only to MAX_VALUE, divide only evenly):
small numbers keep the arithmetic within reach of a ~1M-parameter model. The verifier
(verifiers/countdown.py) is more lenient: any expression that uses each number once and makes the target
passes, so the model may find solutions the book never printed.

The parts are those of the math textbook (exposition, worked, practice, heldout; see math_textbook.py).
Problem.answer is the target ("22"); the worked solution's "Answer:" line is an expression instead, so
the verifier grades with the dataset columns numbers and target, not by comparing text with the answer.
The question lists the numbers sorted, so one puzzle has one question text, and the held-out hash bucket
(shared with the math textbook) keeps it out of training however its solution was found.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlpractice.errors import UserError
from rlpractice.textbook.problems import (
    BookSizes,
    Problem,
    Textbook,
    build_book,
    distinct_problems,
    format_solution,
    is_heldout,
)

LEVELS = (1, 2, 3)
MAX_NUMBER = 20  # the given numbers are 1..MAX_NUMBER ...
MAX_NUMBER_LEVEL1 = 50  # ... except at level 1: two numbers up to 20 make only ~500 distinct puzzles
MAX_VALUE = 100  # every step's result, and so every target, is 1..MAX_VALUE
OPS = ("+", "-", "*", "/")
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclass(frozen=True)
class Node:
    """A solution so far: its value, its expression text, the steps that compute it, the numbers it uses."""

    value: int
    text: str
    prec: int = 3  # precedence of the outermost operator; 3 = a bare number
    steps: tuple[str, ...] = ()
    numbers: tuple[int, ...] = ()


def number(n: int) -> Node:
    return Node(n, str(n), numbers=(n,))


def join(left: Node, op: str, right: Node) -> Node:
    """left op right, bracketing only where the usual order of operations needs it."""
    value = {"+": left.value + right.value, "-": left.value - right.value,
             "*": left.value * right.value, "/": left.value // right.value}[op]
    p = PRECEDENCE[op]
    lt = f"({left.text})" if left.prec < p else left.text
    # 7-(3+2) and 12/(2*3) need brackets on the right even at equal precedence
    rt = f"({right.text})" if right.prec < p or (right.prec == p and op in "-/") else right.text
    step = f"{left.value} {op} {right.value} = {value}."
    return Node(value, f"{lt}{op}{rt}", p, left.steps + right.steps + (step,), left.numbers + right.numbers)


def pairings(a: Node, b: Node) -> list[tuple[Node, str, Node]]:
    """Every allowed step combining a and b: whole results in 1..MAX_VALUE, no * 1 or / 1."""
    x, y = (a, b) if a.value >= b.value else (b, a)
    out = []
    if x.value + y.value <= MAX_VALUE:
        out.append((a, "+", b))
    if x.value > y.value:
        out.append((x, "-", y))
    if x.value * y.value <= MAX_VALUE and y.value > 1:
        out.append((a, "*", b))
    if 1 < y.value < x.value and x.value % y.value == 0:
        out.append((x, "/", y))
    return out


def extend(r: random.Random, node: Node, high: int) -> Node | None:
    """node combined with one new number in 1..high, chosen so the step is allowed (None if none is)."""
    v = node.value
    for op in r.sample(OPS, len(OPS)):
        if op == "+":
            choices = range(1, min(high, MAX_VALUE - v) + 1)
        elif op == "-":
            choices = [c for c in range(1, high + 1) if c != v]  # v - c or c - v, never 0
        elif op == "*":
            choices = range(2, min(high, MAX_VALUE // v) + 1) if v > 1 else range(0)
        else:
            choices = [c for c in range(2, min(high, v - 1) + 1) if v % c == 0]
        if not choices:
            continue
        c = number(r.choice(choices))
        if op == "-":
            return join(node, op, c) if v > c.value else join(c, op, node)
        if op in "+*" and r.random() < 0.5:
            return join(c, op, node)
        return join(node, op, c)
    return None


def make_solution(r: random.Random, level: int) -> Node | None:
    """A random solution using level + 1 numbers; None when the draw hits a dead end (the caller redraws)."""
    if level == 3 and r.random() < 0.5:  # two pairs, then combine them: (a op b) op (c op d)
        left, right = (extend(r, number(r.randint(1, MAX_NUMBER)), MAX_NUMBER) for _ in range(2))
        options = pairings(left, right) if left and right else []
        return join(*r.choice(options)) if options else None
    high = MAX_NUMBER_LEVEL1 if level == 1 else MAX_NUMBER
    node: Node | None = number(r.randint(1, high))
    for _ in range(level):
        node = extend(r, node, high) if node else None
    return node


def question_text(numbers: tuple[int, ...], target: int) -> str:
    """Numbers sorted: one puzzle, one question text (the held-out bucket is chosen by this text)."""
    return f"Use the numbers {', '.join(map(str, sorted(numbers)))} once each with + - * / to make {target}."


def make_problem(r: random.Random, level: int) -> Problem:
    node = None
    while node is None:
        node = make_solution(r, level)
    return Problem(question=question_text(node.numbers, node.value), answer=str(node.value),
                   solution=format_solution(list(node.steps), node.text), level=level,
                   columns={"numbers": sorted(node.numbers), "target": node.value})


def generate(seed: int, count: int, heldout: bool, levels: tuple[int, ...] = LEVELS) -> list[Problem]:
    return distinct_problems(make_problem, seed, count, heldout, tuple(levels))


# ---------------------------------------------------------------- exposition (pretraining text)


def _training_puzzle(r: random.Random) -> Node:
    """A solved puzzle for the exposition, never one from the held-out bucket."""
    while True:
        node = make_solution(r, r.choice(LEVELS))
        if node is not None and not is_heldout(question_text(node.numbers, node.value)):
            return node


def _exposition_paragraph(r: random.Random) -> str:
    kind = r.choice(["rules", "order", "miss", "add", "sub", "mul", "div", "table"])
    if kind == "rules":
        p = _training_puzzle(r)
        nums = ", ".join(map(str, sorted(p.numbers)))
        return (f"In the number game you get some numbers and a target. Use every number once, "
                f"with + - * / and brackets, to make the target. With {nums} you can make {p.value}: "
                f"{' '.join(p.steps)} We write it as {p.text}.")
    if kind == "order":
        a, b, c = r.randint(2, 9), r.randint(2, 9), r.randint(1, 20)
        return (f"Multiply and divide before you add and subtract. {a}*{b}+{c} means {a} * {b} = {a * b}, "
                f"then {a * b} + {c} = {a * b + c}. Brackets come first. {a}*({b}+{c}) means {b} + {c} = {b + c}, "
                f"then {a} * {b + c} = {a * (b + c)}.")
    if kind == "miss":
        # A wrong try, checked and dropped: the book shows that a try is only done when it makes the target.
        p = _training_puzzle(r)
        nums = list(p.numbers)
        r.shuffle(nums)
        node: Node | None = number(nums[0])
        for n in nums[1:]:
            options = pairings(node, number(n)) if node else []
            node = join(*r.choice(options)) if options else None
        if node is None or node.value == p.value:
            return f"To make {p.value}: {' '.join(p.steps)} So {p.text} makes {p.value}."
        return (f"To make {p.value} from {', '.join(map(str, sorted(p.numbers)))}, try {' '.join(node.steps)} "
                f"That makes {node.value}, not {p.value}. Try again: {' '.join(p.steps)} "
                f"That makes {p.value}, so the answer is {p.text}.")
    if kind == "add":
        a, b = r.sample(range(1, 51), 2)
        return f"Adding puts two numbers together: {a} + {b} = {a + b}, and {b} + {a} = {a + b} too."
    if kind == "sub":
        a = r.randint(2, 100)
        b = r.randint(1, a - 1)
        return f"Subtracting takes the smaller number from the bigger one: {a} - {b} = {a - b}."
    if kind == "mul":
        a, b = r.sample(range(2, 11), 2)
        return f"Multiplying counts equal groups: {a} * {b} = {a * b}, and {b} * {a} = {a * b} too."
    if kind == "div":
        b, c = r.randint(2, 10), r.randint(2, 10)
        return f"Dividing shares equally. In this book every division comes out even: {b * c} / {b} = {c}."
    a = r.randint(2, 10)
    return "Times table of " + str(a) + ": " + " ".join(f"{a} * {b} = {a * b}." for b in range(1, 11))


def build_textbook(seed: int, exposition_paragraphs: int, worked: int, practice: int, heldout: int,
                   levels: tuple[int, ...] = LEVELS, answer_only_fraction: float = 0.0) -> Textbook:
    if not levels or not set(levels) <= set(LEVELS):
        raise UserError(f"config key textbook.levels={list(levels)}: the countdown levels are some of {list(LEVELS)}")
    sizes = BookSizes(exposition_paragraphs, worked, practice, heldout)
    return build_book(make_problem, _exposition_paragraph, seed, sizes, levels, answer_only_fraction)
