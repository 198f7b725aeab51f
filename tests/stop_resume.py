"""A stage stopped part-way and resumed: the scaffold the stage-resume tests share. A stop is an exception from
inside a training step, which leaves what a kill leaves, in one process."""

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from rlpractice.tracking import Tracker, read_metrics


class Stop(Exception):
    pass


@contextmanager
def tracking(cfg, run_dir: Path):
    """The real tracker (W&B offline), finished at the end as the process would be."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(cfg, run_dir)
    try:
        yield tracker
    finally:
        tracker.finish({})


def stop_in_call(monkeypatch, owner, name: str, n: int, run) -> None:
    """`run()`, stopped by `Stop` raised inside its n-th call of `owner.name` (a training step)."""
    real, calls = getattr(owner, name), []

    def call_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Stop
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(owner, name, call_then_stop)
        with pytest.raises(Stop):
            run()


def assert_resumed_like_straight(straight, resumed, straight_dir: Path, stopped_dir: Path, stage: str,
                                 keys: tuple[str, ...], resumed_after: int) -> None:
    """The resumed stage ends with the straight run's weights, bit for bit, has logged each step once with the same
    values of `keys`, and says once that it resumed after step `resumed_after`."""
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name
    rows = lambda d: [[r[k] for k in ("step", *keys)] for r in read_metrics(d / "metrics.jsonl") if r["stage"] == stage]  # noqa: E731
    assert rows(stopped_dir) == rows(straight_dir)
    assert [r["step"] for r in read_metrics(stopped_dir / "metrics.jsonl") if r["stage"] == "resume"] == [resumed_after]
