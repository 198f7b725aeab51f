"""A dataset's own gold answers, checked with the run's verifier before any training."""

from __future__ import annotations

from rlpractice.errors import UserError
from rlpractice.grading.pool import GradingPool
from rlpractice.textbook.dataset import BadRecord, report_skipped
from rlpractice.textbook.problems import ANSWER_MARK, Problem


def drop_ungradable(problems: list[Problem], pool: GradingPool, skip_bad: bool) -> list[Problem]:
    """Problems whose own gold answer the verifier accepts. A dataset answer the verifier cannot read
    (e.g. '3 or 4 apples') would give every sample reward 0: it is an error naming the record, or with
    `skip_bad` it is skipped and listed."""
    grades = pool.grade([f"{ANSWER_MARK} {p.answer}" for p in problems], [p.answer for p in problems],
                        [p.columns for p in problems])
    bad = [(p, g.reason) for p, g in zip(problems, grades, strict=True) if g.reward < 1.0]
    if bad and not skip_bad:
        p, reason = bad[0]
        raise UserError(f"{p.source}: the verifier cannot grade this gold answer {p.answer!r} ({reason}); "
                        f"{len(bad)} such record(s). Fix them, or set data.skip_bad=true to skip and list them.")
    report_skipped("the dataset", [BadRecord(p.source, f"gold answer {p.answer!r} ungradable: {r}") for p, r in bad])
    dropped = {id(p) for p, _ in bad}
    return [p for p in problems if id(p) not in dropped]
