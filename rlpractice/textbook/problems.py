"""The unit of a textbook: a problem, and the text format the model reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field

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
