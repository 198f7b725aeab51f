"""Where the run's problems come from (`data.source`): a built-in textbook, or your own dataset file.

Both give the same four parts (exposition, worked, practice, held-out), so the stages never know the
difference. For a dataset, the exposition is its questions with their worked solutions (what a model
trained from scratch reads), worked problems are the records that have a solution, and the held-out
set is `data.heldout_path`, or `data.heldout_size` records set aside by a seeded shuffle.
"""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.textbook.dataset import load_problems, report_skipped, set_aside
from rlpractice.textbook.problems import Problem, Textbook
from rlpractice.textbook.retry_textbook import with_retries

BUILTIN_TEXTBOOKS = {"math": "rlpractice.textbook.math_textbook", "countdown": "rlpractice.textbook.countdown_textbook"}


def load_book(cfg: DictConfig) -> Textbook:
    if cfg.data.source == "textbook":
        tb = cfg.textbook  # textbook.name and data.source are checked against the schema's choices
        build = importlib.import_module(BUILTIN_TEXTBOOKS[tb.name]).build_textbook
        book = build(cfg.seed, tb.exposition_paragraphs, tb.worked, tb.practice, tb.heldout, tuple(tb.levels),
                     tb.answer_only)
        env = cfg.get("env")  # check and retry: SFT shows the exchange the environment will have with the model
        if env is not None and env.name == "retry" and env.textbook_retries > 0:
            book = with_retries(book, env.textbook_retries, cfg.seed)
            print(f"[data] {sum(bool(p.first_attempt) for p in book.worked)} of {len(book.worked)} worked problems are "
                  "check-and-retry examples: a wrong attempt, the check, a corrected one "
                  f"(env.textbook_retries={env.textbook_retries})")
        return book
    tools = cfg.get("tools")  # with the calculator, GSM8K's annotations become calls SFT teaches
    return _dataset_book(cfg.data, cfg.seed, bool(tools and "calculator" in tools.names and tools.textbook_calls))


def _load(d: DictConfig, path: str, calculator_calls: bool = False) -> list[Problem]:
    problems, bad = load_problems(path, d.question_key, d.answer_key, d.answer_format, d.skip_bad, d.split,
                                  calculator_calls)
    report_skipped(path, bad)
    return problems


def _dataset_book(d: DictConfig, seed: int, calculator_calls: bool = False) -> Textbook:
    train = _load(d, d.path, calculator_calls)
    if d.heldout_path:
        heldout = _load(d, d.heldout_path)
    else:
        if d.heldout_size >= len(train):
            raise UserError(f"data.heldout_size={d.heldout_size} leaves no training problems in {d.path} "
                            f"({len(train)} records); lower it or set data.heldout_path")
        train, heldout = set_aside(train, d.heldout_size, seed)
    worked = [p for p in train if p.solution]
    exposition = [f"{p.prompt}{p.solution}" for p in worked] or [p.question for p in train]
    return Textbook(exposition=exposition, worked=worked, practice=train, heldout=heldout)
