"""The unit of a textbook: a problem, and the text format the model reads and writes."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

# The model sees "Question: ...\nSolution:" and writes the steps, then "Answer: <final answer>".
ANSWER_MARK = "Answer:"


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # the gold final answer, as text
    solution: str = ""  # step-by-step worked solution ending in "Answer: ..." (empty for practice)
    level: int = 0  # difficulty level; 0 = unknown
    columns: dict = field(default_factory=dict, compare=False, hash=False)  # extra dataset columns
    source: str = field(default="", compare=False)  # where it came from ("file:line"), for error messages
    prompt_text: str = field(default="", compare=False)  # the prompt as rendered by a chat template, if any
    # the solution's steps, kept when `solution` prints only the answer (built-in math textbook; () elsewhere)
    steps: tuple[str, ...] = field(default=(), compare=False)
    # a wrong attempt printed before `solution`, with the check's words between (retry_textbook.py); "": none
    first_attempt: str = ""

    @property
    def prompt(self) -> str:
        return self.prompt_text or format_prompt(self.question)


@dataclass
class Textbook:
    """The four parts: exposition -> pretrain, worked -> SFT, practice -> RL, held-out -> evaluation."""

    exposition: list[str]
    worked: list[Problem]
    practice: list[Problem]
    heldout: list[Problem]


def format_prompt(question: str) -> str:
    return f"Question: {question}\nSolution:"


def format_solution(steps: list[str], answer: str) -> str:
    """The completion the model should learn to write (leading space: it follows 'Solution:')."""
    return " " + " ".join(steps + [f"{ANSWER_MARK} {answer}"])


HELDOUT_BUCKETS = 8  # one question in 8 (by text hash) is reserved for evaluation


def is_heldout(question: str) -> bool:
    """Held-out questions are chosen by a hash of their text, so no seed or size can leak one into training."""
    return hashlib.sha256(question.encode()).digest()[0] % HELDOUT_BUCKETS == 0


def distinct_problems(make_problem: Callable[[random.Random, int], Problem], seed: int, count: int, heldout: bool,
                      levels: tuple[int, ...]) -> list[Problem]:
    """`count` distinct problems from a generator, spread evenly over `levels`, all in (or all out of) the
    held-out bucket."""
    r = random.Random(seed)
    out: list[Problem] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 200 * count + 10_000:
            raise RuntimeError(f"the problem generator ran out of distinct problems after {len(out)}")
        p = make_problem(r, levels[len(out) % len(levels)])
        if p.question in seen or is_heldout(p.question) != heldout:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def book_text(paragraph: Callable[[random.Random], str], seed: int, paragraphs: int,
              worked: list[Problem]) -> list[str]:
    """The exposition: `paragraphs` explanations and facts, plus the worked examples printed as a book
    prints them, shuffled together."""
    r = random.Random(seed)
    texts = [paragraph(r) for _ in range(paragraphs)]
    texts += [format_prompt(p.question) + p.solution for p in worked]
    r.shuffle(texts)
    return texts


def answer_only(problems: list[Problem], fraction: float, seed: int) -> list[Problem]:
    """The same problems with a seeded `fraction` of their solutions reduced to their "Answer:" line (their `steps`
    stay, for a corrected attempt that shows them: retry_textbook.py). A countdown book's answer line is the
    expression, not the target: its answer key prints how to make the number, not the number itself."""
    r = random.Random(seed)
    return [replace(p, solution=format_solution([], p.solution.rsplit(ANSWER_MARK, 1)[1].strip()))
            if r.random() < fraction else p for p in problems]


class BookSizes(NamedTuple):
    """How much of each part a built-in textbook has (the `textbook` config's counts)."""

    exposition_paragraphs: int
    worked: int
    practice: int
    heldout: int


def build_book(make_problem: Callable[[random.Random, int], Problem], paragraph: Callable[[random.Random], str],
               seed: int, sizes: BookSizes, levels: tuple[int, ...], answer_only_fraction: float) -> Textbook:
    """A built-in textbook's four parts from its problem generator and exposition paragraphs; worked and practice
    use different seeds, held-out is disjoint by construction."""
    exposition_paragraphs, worked, practice, heldout = sizes
    def part(offset: int, count: int, in_heldout: bool) -> list[Problem]:
        return distinct_problems(make_problem, seed * 4 + offset, count, in_heldout, tuple(levels))

    worked_p = answer_only(part(1, worked, False), answer_only_fraction, seed * 4 + 5)
    return Textbook(exposition=book_text(paragraph, seed * 4, exposition_paragraphs, worked_p), worked=worked_p,
                    practice=part(2, practice, False), heldout=part(3, heldout, True))
