"""Your own problems from a file: JSONL, Parquet, or a folder written by HF `datasets.save_to_disk`.

Each record becomes a Problem: the question, the gold final answer (read out of the answer field by
`answer_format`), a worked solution when the record has one (for SFT), and every other field as a
column that the verifier receives (as TRL passes dataset columns to its reward functions).

Answer formats:
  gsm8k   "She sells 16 - 3 = <<16-3=13>>13 eggs ...\\n#### 13"  -> answer "13", solution = the steps, without
          the calculator annotations, or (`calculator_calls`, a run with the calculator tool) with each one as
          a call: "She sells 16 - 3 = <<16-3>> 13 eggs", so SFT teaches calls (rlpractice/tools/syntax.py)
  boxed   a MATH-style solution; the answer is its last \\boxed{...}, the solution the text itself
  plain   the field is the final answer as it is (no solution)

A record that cannot become a problem (bad JSON, a missing key, no answer in the answer field) is an
error naming file:line and what to fix; with `skip_bad=true` it is skipped and listed instead.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlpractice.errors import UserError
from rlpractice.grading.mathparse import extract_answer
from rlpractice.textbook.problems import Problem, format_solution
from rlpractice.tools.syntax import ToolError, from_gsm8k

ANSWER_FORMATS = ("gsm8k", "boxed", "plain")
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: "<<16-3=13>>13" -> "13"


@dataclass(frozen=True)
class BadRecord:
    where: str  # "file:line"
    reason: str


def read_records(path: str | Path, split: str = "train") -> list[tuple[str, dict | None, str]]:
    """(where, record, error) per record: where is 'file:line' (JSONL) or 'file:row N' (tables);
    record is None when it could not be read, with the reason in error."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data.path={str(path)!r} does not exist")
    if path.is_dir():
        return _read_hf_disk(path, split)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"{path}:row {i + 1}", row, "") for i, row in enumerate(pq.read_table(path).to_pylist())]
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append((f"{path}:{n}", None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(record, dict):
                out.append((f"{path}:{n}", None, f"a JSON object was expected, not {type(record).__name__}"))
                continue
            out.append((f"{path}:{n}", record, ""))
    return out


def convert_records(path: str | Path, split: str, convert: Callable[[dict, str], object], skip_bad: bool,
                    skip_key: str) -> tuple[list, list[BadRecord]]:
    """`convert(record, where)` of each record, and the records skipped: one that cannot be read or converted (the
    converter raises ValueError with the reason) stops the run unless `skip_bad` (the setting `skip_key`)."""
    out, bad = [], []
    for where, record, error in read_records(path, split):
        try:
            if record is None:
                raise ValueError(error)
            out.append(convert(record, where))
        except ValueError as exc:
            if not skip_bad:
                raise UserError(f"{where}: {exc}. Fix the record, or set {skip_key}=true to skip and list such "
                                "records.") from None
            bad.append(BadRecord(where, str(exc)))
    return out, bad


def report_skipped(path: str | Path, bad: list[BadRecord], section: str = "data") -> None:
    """The records `section`.skip_bad=true skipped, the first ten listed."""
    if bad:
        shown = "\n".join(f"  {b.where}: {b.reason}" for b in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        print(f"[{section}] skipped {len(bad)} record(s) of {path} ({section}.skip_bad=true):\n{shown}{more}",
              flush=True)


def set_aside(items: list, size: int, seed: int) -> tuple[list, list]:
    """(the rest, `size` items set aside by a seeded shuffle), both in their original order."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


def _read_hf_disk(folder: Path, split: str) -> list[tuple[str, dict | None, str]]:
    """A `save_to_disk` folder: Arrow stream files listed in state.json (a DatasetDict has one per split)."""
    import pyarrow as pa

    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        if split not in splits:
            raise UserError(f"{folder} holds splits {splits}; set data.split to one of them")
        folder = folder / split
    state = folder / "state.json"
    if not state.is_file():
        raise UserError(f"data.path={str(folder)!r} is a folder but not a `datasets.save_to_disk` folder "
                        "(no state.json); give a .jsonl or .parquet file, or such a folder")
    rows: list[dict] = []
    for entry in json.loads(state.read_text())["_data_files"]:
        with pa.memory_map(str(folder / entry["filename"])) as source:
            rows.extend(pa.ipc.open_stream(source).read_all().to_pylist())
    return [(f"{folder}:row {i + 1}", row, "") for i, row in enumerate(rows)]


def split_answer(text: str, answer_format: str, calculator_calls: bool = False) -> tuple[str | None, str]:
    """(final answer or None, worked solution or '') out of an answer field. `calculator_calls`: GSM8K's
    annotations become calculator calls, each one whose result the calculator writes the same way."""
    if answer_format == "gsm8k":
        steps, mark, final = text.rpartition("####")
        if not mark:
            return None, ""
        answer = final.strip().replace(",", "").rstrip(".")
        steps = " ".join((from_gsm8k(steps, calculator_output) if calculator_calls else _CALCULATOR.sub("", steps))
                         .split())
        return (answer or None), (format_solution([steps], answer) if steps and answer else "")
    if answer_format == "boxed":
        answer = extract_answer(text) if "\\boxed{" in text else None
        return answer, (format_solution([" ".join(text.split())], answer) if answer else "")
    if answer_format == "plain":
        return (text.strip() or None), ""
    raise UserError(f"data.answer_format={answer_format!r}; choose one of {ANSWER_FORMATS}")


def calculator_output(expression: str) -> str | None:
    """What the calculator tool answers to `expression`, or None when it refuses it."""
    from rlpractice.tools.calculator import calculator

    try:
        return calculator(expression)
    except ToolError:
        return None


def to_problem(record: dict, question_key: str, answer_key: str, answer_format: str, where: str = "",
               calculator_calls: bool = False) -> Problem:
    """A Problem from one record; raises ValueError with the reason when it cannot be one."""
    for key in (question_key, answer_key):
        if key not in record:
            raise ValueError(f"no key {key!r} (keys: {sorted(record)}); set data.question_key/data.answer_key")
    question, raw = record[question_key], record[answer_key]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{question_key!r} is not a non-empty string")
    answer, solution = split_answer(str(raw), answer_format, calculator_calls)
    if answer is None:
        raise ValueError(f"no final answer in {answer_key!r} for answer_format={answer_format!r}: {str(raw)[-80:]!r}")
    columns = {k: v for k, v in record.items() if k not in (question_key, answer_key)}
    return Problem(question=" ".join(question.split()), answer=answer, solution=solution, columns=columns,
                   source=where)


def load_problems(path: str | Path, question_key: str, answer_key: str, answer_format: str,
                  skip_bad: bool = False, split: str = "train",
                  calculator_calls: bool = False) -> tuple[list[Problem], list[BadRecord]]:
    """Problems from a dataset file, and the records skipped (only with skip_bad). `calculator_calls`: worked
    solutions show GSM8K's annotations as calculator calls (`split_answer`)."""
    if answer_format not in ANSWER_FORMATS:
        raise UserError(f"data.answer_format={answer_format!r}; choose one of {ANSWER_FORMATS}")
    problems, bad = convert_records(path, split, lambda record, where: to_problem(
        record, question_key, answer_key, answer_format, where, calculator_calls), skip_bad, "data.skip_bad")
    if not problems:
        raise UserError(f"data.path={str(path)!r}: no usable problems ({len(bad)} bad records)")
    return problems, bad
