"""Reward code written for other trainers, run as rlpractice verifiers (in the grading workers, with their timeouts).

- TRL: `verifier.name=trl:path/to/file.py:fn` with `fn(prompts, completions, **kwargs) -> list[float | None]`,
  batched as in TRL's GRPOTrainer. It is called on one completion at a time, as text (TRL's standard format, not
  the conversational one): `prompts=[prompt]`, `completions=[completion]`, the gold answer as the `answer` kwarg
  (in TRL it is a dataset column) and each of the problem's columns as a kwarg, every one a list with one value.
  None (or NaN) means "not applicable".
- verl: `verifier.name=verl:path/to/file.py:compute_score` with `compute_score(data_source, solution_str,
  ground_truth, extra_info=None) -> float | dict` (a dict holds the reward under "score"). `data_source` is the
  problem's `data_source` column (else ""), `extra_info` its `extra_info` column, else all its columns.

A return value of the wrong shape is this answer's failed grade ("error: ValueError: ..."), like an exception.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import numbers
import reprlib
from collections.abc import Callable

from rlpractice.errors import UserError
from rlpractice.grading.grade import Grade
from rlpractice.plugins import load_object


def foreign_verifier(name: str) -> Callable:
    """The verifier function `name` = 'trl:<ref>' or 'verl:<ref>' names, <ref> being 'file.py:fn' or 'module:fn',
    adapted to rlpractice's signature `fn(completion, answer, **columns)`."""
    convention, _, ref = name.partition(":")
    fn = load_object(ref, "verifier")
    if not callable(fn):
        raise UserError(f"verifier {name!r} is a {type(fn).__name__}, not a function")
    adapter = TRLReward(ref, fn) if convention == "trl" else VerlScore(ref, fn)
    return adapter


class TRLReward:
    """A TRL reward function as a verifier of one completion."""

    wants_prompt = True  # the grading worker passes the sample's prompt as `prompt=` (pool.py)

    def __init__(self, ref: str, fn: Callable):
        self.ref, self.fn = ref, fn

    def __call__(self, completion: str, answer: str, prompt: str = "", **columns) -> float | None:
        # TRL's own arguments win over a column of the same name; the gold answer over an `answer` column
        kwargs = {k: [v] for k, v in columns.items() if k not in ("prompts", "completions")}
        result = awaited(self.fn(prompts=[prompt], completions=[completion], **{**kwargs, "answer": [answer]}))
        if hasattr(result, "tolist") and not isinstance(result, str):  # a numpy array or torch tensor
            result = result.tolist()
        if not isinstance(result, list | tuple) or len(result) != 1:
            raise ValueError(f"{self.ref} returned {_show(result)}; a TRL reward function returns a list with one "
                             "float (or None) per completion")
        [reward] = result
        if reward is None:
            return None
        if not isinstance(reward, numbers.Real):
            raise ValueError(f"{self.ref} returned [{_show(reward)}]; each reward is a float (or None)")
        return None if math.isnan(reward) else float(reward)  # TRL reads NaN as None


class VerlScore:
    """A verl `compute_score` as a verifier."""

    def __init__(self, ref: str, fn: Callable):
        self.ref, self.fn = ref, fn

    def __call__(self, completion: str, answer: str, **columns) -> Grade:
        extra_info = columns["extra_info"] if "extra_info" in columns else dict(columns)
        result = awaited(self.fn(data_source=columns.get("data_source", ""), solution_str=completion,
                                  ground_truth=answer, extra_info=extra_info))  # by keyword, as verl calls it
        others = {}
        if isinstance(result, dict):
            if "score" not in result:
                raise ValueError(f"{self.ref} returned a dict without 'score' (keys: {sorted(result)[:8]})")
            others = {k: v for k, v in result.items() if k != "score"}
            result = result["score"]
        if not isinstance(result, numbers.Real):
            raise ValueError(f"{self.ref} returned {_show(result)}; compute_score returns a float or a dict with "
                             "the float under 'score'")
        shown = ", ".join(f"{k}={reprlib.repr(v)}" for k, v in others.items())
        return Grade(float(result), f"score {float(result):g}" + (f" ({shown})"[:200] if shown else ""))


def awaited(result):
    """An async reward function's result, awaited here (one answer at a time, in the grading worker)."""
    if inspect.isawaitable(result):
        async def wait():
            return await result

        return asyncio.run(wait())
    return result


def _show(value) -> str:
    return f"{type(value).__name__} {reprlib.repr(value)}"
