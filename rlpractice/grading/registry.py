"""Verifiers: small functions that grade one completion against the gold answer.

A verifier is any function `fn(completion: str, answer: str, **columns) -> Grade | float | bool | None`,
plain or `async def` (awaited in the grading worker: a verifier that calls a service). `columns` are the
problem's other dataset fields. Name it in config in one of three ways (rlpractice/plugins.py loads them):
- a function in a file: `verifier.name=path/to/my_verifier.py:fn` (or a module: `mypkg.mod:fn`);
- a name registered with `@verifier("name")` in a file listed in `verifier.plugins` (files or modules);
- a built-in name: the modules of the top-level `verifiers/` folder (installed as `rlpractice.verifiers`);
- reward code written for TRL or verl, unchanged: `trl:file.py:fn`, `verl:file.py:compute_score` (conventions.py).
Only the files named are imported. Several verifiers combine with weights (`verifier.weights`, see `combine`);
None means "does not apply to this answer" and leaves that verifier out of the sum.

`fast=` optionally gives a cheap, safe function run in the trainer process first (e.g. plain numbers);
it returns a Grade, or None to send the answer to the isolated worker processes. `answer=` optionally says how
the verifier reads a completion's final answer (`fn(completion) -> str | None`): held-out maj@n votes on it
(evaluation.py; without one, on the math extraction). A verifier with the attribute `wants_prompt = True` also
gets the sample's prompt, as the keyword `prompt`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from rlpractice.errors import UserError
from rlpractice.grading.conventions import foreign_verifier
from rlpractice.grading.grade import Grade
from rlpractice.plugins import import_plugin, load_object

BUILTIN = "rlpractice.verifiers"  # the top-level verifiers/ folder, shipped inside the package (pyproject.toml)


@dataclass(frozen=True)
class Verifier:
    name: str
    fn: Callable
    fast: Callable | None = None
    answer: Callable[[str], str | None] | None = None


_REGISTRY: dict[str, Verifier] = {}


def verifier(name: str, fast: Callable | None = None, answer: Callable[[str], str | None] | None = None) -> Callable:
    """Decorator: register `fn` under `name`."""

    def register(fn: Callable) -> Callable:
        _REGISTRY[name] = Verifier(name, fn, fast, answer)
        return fn

    return register


def as_grade(result) -> Grade | None:
    """Verifiers may return a Grade, a bool, a number, or None (not applicable); normalise to Grade."""
    if result is None or isinstance(result, Grade):
        return result
    if isinstance(result, bool):
        return Grade(float(result), "correct" if result else "incorrect")
    if isinstance(result, (int, float)):
        return Grade(float(result), f"score {float(result):g}")
    raise TypeError(f"a verifier must return Grade, bool or float, not {type(result).__name__}")


FAILURE_PREFIXES = ("error:", "timeout", "crash")


def is_failure(reason: str) -> bool:
    """True when the verifier itself failed (as opposed to judging the answer wrong)."""
    return reason.startswith(FAILURE_PREFIXES)


def combine(grades: dict[str, Grade | None], weights: dict[str, float]) -> Grade:
    """The weighted sum of several verifiers' rewards, with every reason; a verifier that returned None
    (not applicable) is left out. One verifier alone: its own grade, unchanged."""
    if len(weights) == 1:
        [(name, grade)] = grades.items()
        return grade if grade is not None else Grade(0.0, f"{name}: not applicable")
    applied = {n: g for n, g in grades.items() if g is not None}
    reward = sum(weights[n] * g.reward for n, g in applied.items())
    reason = "; ".join(f"{n}: {g.reason if g is not None else 'not applicable'}" for n, g in grades.items())
    if applied and all(is_failure(g.reason) for g in applied.values()):
        reason = "error: every verifier failed; " + reason  # counted as a verifier failure (is_failure)
    return Grade(reward, reason, {n: g.reward for n, g in applied.items()})


def _load_builtins() -> None:
    package = importlib.import_module(BUILTIN)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{BUILTIN}.{module.name}")


def get_verifier(name: str, plugins: list[str] | tuple[str, ...] = ()) -> Verifier:
    """Look `name` up: 'file.py:function' or 'module:function' (after 'trl:' or 'verl:', a function written for
    that trainer), else a name registered by a built-in verifier or by one of the `plugins` (which are imported
    first, so a broken one fails even when unused)."""
    for ref in plugins:  # for their @verifier registrations; a failure is one line
        import_plugin(str(ref), "verifier.plugins")
    if name.startswith(("trl:", "verl:")):
        return Verifier(name, foreign_verifier(name))
    if name.endswith(".py"):
        raise UserError(f"verifier {name!r}: name the function in it too ({name}:my_function), or list the file "
                        "in verifier.plugins and use a name it registers")
    if ":" in name:
        fn = load_object(name, "verifier")
        if not callable(fn):
            raise UserError(f"verifier {name!r} is a {type(fn).__name__}, not a function")
        registered = next((v for v in _REGISTRY.values() if v.fn is fn), None)  # keeps its fast path
        if registered:
            return Verifier(name, fn, registered.fast, registered.answer)
        return Verifier(name, fn, getattr(fn, "fast", None), getattr(fn, "answer", None))
    if name not in _REGISTRY:
        _load_builtins()
    if name not in _REGISTRY:
        raise UserError(
            f"unknown verifier {name!r}; registered: {sorted(_REGISTRY)}. Name a function in a file "
            f"(verifier.name=path/to/my_verifier.py:fn), or register one with @verifier({name!r}) in a file "
            "listed in verifier.plugins."
        )
    return _REGISTRY[name]


def check_verifiers(cfg: DictConfig) -> None:
    """Resolve every verifier the `verifier` config group names, here in the trainer, so that a bad name or a
    broken plugin is one line before anything starts (the grading workers load them again)."""
    for name in cfg.weights or [cfg.name]:
        get_verifier(str(name), [str(p) for p in cfg.plugins])
