"""Preference pairs for the reward model: (prompt, chosen, rejected), built in or from your own file.

Built-in pairs come from the math textbook with no download. For each question a "teacher" prefers the
textbook's worked solution (every step shown, the right final answer) to a wrong solution of one of the kinds
a student really writes:
    slip          the same steps with an arithmetic slip in one of them, carried through to the answer
                  (5 * 6 = 35, then 35 + 4 = 39): every step after the slip is consistent with it
    wrong_answer  every step right, then a different number copied into "Answer:"
    bare_guess    no work at all, a wrong number after "Answer:"
So it prefers a right final answer to a wrong one and, with bare guesses, shown work to none.

Why this is a fair stand-in for human preferences: a person asked which of two solutions is better prefers
the correct one and, between work shown and a bare guess, the work; the teacher does exactly that, and its
"correct" is the sympy verifier's (each built-in chosen solution grades 1, each rejected one 0; tests check
it). Like a human label, the preference is about the whole answer, so a reward model must learn it from the
text (a slip hides inside an otherwise tidy solution). And like human labels, it prefers more than
correctness alone: shown work. A policy trained against the learned reward can exploit that (long,
tidy-looking, wrong work), which is the over-optimisation the verifier lets rlpractice measure.

Held-out pairs are made from the textbook's held-out questions (the hash bucket no training part uses), so
held-out accuracy is measured on questions the reward model and the policy never saw.

Your own pairs: JSONL, Parquet or a `datasets.save_to_disk` folder with TRL's field names: `chosen` and
`rejected` (text), `prompt` (optional: without it the prompt is part of both texts) and an optional numeric
`margin`. A record that cannot be a pair is an error naming file:line, as for datasets (dataset.py).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.textbook.dataset import BadRecord, convert_records, report_skipped, set_aside
from rlpractice.textbook.math_textbook import LEVELS, make_problem
from rlpractice.textbook.problems import distinct_problems, format_prompt, format_solution


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str  # the completion the teacher (or person) preferred
    rejected: str
    margin: float | None = None  # how much chosen should win by; None: rm.margin
    kind: str = ""  # built-in pairs: how the rejected solution was made (slip, wrong_answer, bare_guess)
    source: str = ""  # "file:line" for pairs read from a file


# ---------------------------------------------------------------- the built-in teacher

KINDS = ("slip", "slip", "wrong_answer", "bare_guess")  # drawn uniformly: half the rejected solutions are slips
_STEP = re.compile(r"^(?P<lhs>.+) = (?P<rhs>\d+(?:/\d+)?)\.$")
_INT_OP = re.compile(r"^(\d+) ([-+*/]) (\d+)$")


def _value(text: str) -> Fraction:
    num, _, den = text.partition("/")
    return Fraction(int(num), int(den or 1))


def wrong_number(text: str, r: random.Random) -> str:
    """A plausible wrong result in the same form: an integer off by 1, 2 or 10 (or its digits swapped), a
    fraction with its numerator off by 1 or 2. Never equal in value to `text`, never negative."""
    num, slash, den = text.partition("/")
    n = int(num)
    while True:
        if slash:
            guess = f"{n + r.choice((-2, -1, 1, 2))}/{den}"
        elif n >= 10 and num[-1] not in ("0", num[0]) and r.random() < 0.2:
            guess = num[::-1]
        else:
            guess = str(n + r.choice((-10, -2, -1, 1, 1, 2, 10)))
        if not guess.startswith("-") and not guess.startswith("0/") and _value(guess) != _value(text):
            return guess


def apply_step(a: int, op: str, b: int) -> int | None:
    """One integer step as the textbook writes them; None when the result is not a whole number >= 0."""
    if op == "/":
        return a // b if b and a % b == 0 else None
    out = {"+": a + b, "-": a - b, "*": a * b}[op]
    return out if out >= 0 else None


def slipped(steps: list[str], answer: str, r: random.Random) -> list[str]:
    """The steps with one result replaced by a wrong number and every later step redone with it. When the
    steps are not all whole-number operations (fractions), or redoing them fails (a division that no longer
    comes out even), the slip is in the last step. The last step's result is the new (wrong) answer."""
    return _chain_slip(steps, answer, r) or _last_step_slip(steps, r)


def _chain_slip(steps: list[str], answer: str, r: random.Random) -> list[str] | None:
    matches = [_STEP.match(s) for s in steps]
    ops = [_INT_OP.match(m["lhs"]) if m else None for m in matches]
    if not all(ops):
        return None
    at = r.randrange(len(steps))
    out = steps[:at]
    changed: dict[str, str] = {}  # old result -> slipped result, for the later steps that use it
    for i in range(at, len(steps)):
        a, sign, b = ops[i].groups()
        a, b = changed.get(a, a), changed.get(b, b)
        result = wrong_number(matches[i]["rhs"], r) if i == at else apply_step(int(a), sign, int(b))
        if result is None:
            return None
        changed[matches[i]["rhs"]] = str(result)
        out.append(f"{a} {sign} {b} = {result}.")
    return out if _value(str(result)) != _value(answer) else None


def _last_step_slip(steps: list[str], r: random.Random) -> list[str]:
    m = _STEP.match(steps[-1])
    return steps[:-1] + [f"{m['lhs']} = {wrong_number(m['rhs'], r)}."]


def teacher_pair(question: str, steps: list[str], answer: str, r: random.Random, kind: str | None = None,
                 ) -> PreferencePair:
    """The shown-work solution with the right answer (chosen) against a wrong one made as `kind` says
    (drawn from KINDS when None)."""
    kind = kind or r.choice(KINDS)
    if kind == "slip":
        wrong_steps = slipped(steps, answer, r)
        rejected = format_solution(wrong_steps, _STEP.match(wrong_steps[-1])["rhs"])
    elif kind == "wrong_answer":
        rejected = format_solution(steps, wrong_number(answer, r))
    elif kind == "bare_guess":
        rejected = format_solution([], wrong_number(answer, r))
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {sorted(set(KINDS))}")
    return PreferencePair(format_prompt(question), format_solution(steps, answer), rejected, kind=kind)


def builtin_pairs(seed: int, count: int, heldout: bool) -> list[PreferencePair]:
    """`count` teacher pairs on distinct textbook questions (spread over its levels), from the held-out bucket
    or from outside it."""
    problems = distinct_problems(make_problem, 10_000 + 2 * seed + heldout, count, heldout, LEVELS)
    r = random.Random(20_000 + 2 * seed + heldout)
    return [teacher_pair(p.question, list(p.steps), p.answer, r) for p in problems]


# ---------------------------------------------------------------- your own pairs

def to_pair(record: dict, where: str = "") -> PreferencePair:
    """A pair from one record with TRL's field names; raises ValueError with the reason when it is not one."""
    for key in ("chosen", "rejected"):
        if key not in record:
            raise ValueError(f"no key {key!r} (keys: {sorted(record)}); a preference record needs 'chosen' and "
                             "'rejected' texts and, optionally, 'prompt' and 'margin'")
    for key in ("prompt", "chosen", "rejected"):
        value = record.get(key, "")
        if isinstance(value, list):
            raise ValueError(f"{key!r} is a list of messages (TRL's conversational format); give plain text: "
                             "render the conversation with your chat template first")
        if not isinstance(value, str):
            raise ValueError(f"{key!r} is a {type(value).__name__}, not text")
    if not record["chosen"].strip() or not record["rejected"].strip():
        raise ValueError("'chosen' or 'rejected' is empty")
    if record["chosen"] == record["rejected"]:
        raise ValueError("'chosen' and 'rejected' are the same text: the pair prefers nothing")
    margin = record.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise ValueError(f"'margin' is {margin!r}, not a number")
    return PreferencePair(record.get("prompt", ""), record["chosen"], record["rejected"],
                          None if margin is None else float(margin), source=where)


def load_pair_file(path: str | Path, skip_bad: bool = False, split: str = "train",
                   key: str = "rm.pairs") -> tuple[list[PreferencePair], list[BadRecord]]:
    """Pairs from a file (and, with `skip_bad`, the records skipped); `key` names the setting in errors."""
    if not Path(path).exists():
        raise UserError(f"{key}={str(path)!r} does not exist; give a .jsonl or .parquet file of preference "
                        "pairs (prompt, chosen, rejected), or builtin")
    pairs, bad = convert_records(path, split, to_pair, skip_bad, "rm.skip_bad")
    report_skipped(path, bad, "rm")
    if not pairs:
        raise UserError(f"{key}={str(path)!r}: no usable preference pairs ({len(bad)} bad records)")
    return pairs, bad


def load_pairs(s: DictConfig, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training pairs, held-out pairs) as the `rm` settings choose them."""
    if s.pairs == "builtin":
        train = builtin_pairs(seed, s.train_size, heldout=False)
        heldout = builtin_pairs(seed, s.heldout_size, heldout=True)
        if s.heldout_pairs:
            heldout = load_pair_file(s.heldout_pairs, s.skip_bad, s.split, "rm.heldout_pairs")[0]
        return train, heldout
    train = load_pair_file(s.pairs, s.skip_bad, s.split)[0]
    if s.heldout_pairs:
        return train, load_pair_file(s.heldout_pairs, s.skip_bad, s.split, "rm.heldout_pairs")[0]
    if s.heldout_size >= len(train):
        raise UserError(f"rm.heldout_size={s.heldout_size} leaves no training pairs in {s.pairs} ({len(train)} "
                        "pairs); lower it or set rm.heldout_pairs")
    return set_aside(train, s.heldout_size, seed)
