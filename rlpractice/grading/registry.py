"""Verifiers: small functions that grade one completion against the gold answer.

A verifier is any function `fn(completion: str, answer: str, **columns) -> Grade | float | bool | None`,
plain or `async def` (awaited in the grading worker: a verifier that calls a service). `columns` are the
problem's other dataset fields. Register it with `@verifier("name")` in a file under the top-level
`verifiers/` folder (or any folder listed in `verifier.dirs`), or name it by dotted path in config:
`verifier.name=mypkg.mod:fn`. Several verifiers combine with weights (`verifier.weights`, see `combine`);
None means "does not apply to this answer" and leaves that verifier out of the sum.

`fast=` optionally gives a cheap, safe function run in the trainer process first (e.g. plain numbers);
it returns a Grade, or None to send the answer to the isolated worker processes.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlpractice.errors import UserError

# The repository's own plugin folder. It is not a Python package (a PyPI package named `verifiers`
# exists); its files are loaded by path under the module prefix below.
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "verifiers"
_PLUGIN_PREFIX = "rlpractice_verifiers"


@dataclass(frozen=True)
class Grade:
    reward: float
    reason: str
    parts: dict[str, float] | None = None  # each verifier's reward, when several are combined


@dataclass(frozen=True)
class Verifier:
    name: str
    fn: Callable
    fast: Callable | None = None


_REGISTRY: dict[str, Verifier] = {}


def verifier(name: str, fast: Callable | None = None) -> Callable:
    """Decorator: register `fn` under `name`."""

    def register(fn: Callable) -> Callable:
        _REGISTRY[name] = Verifier(name, fn, fast)
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


def _load_plugin_dir(folder: Path) -> None:
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"{_PLUGIN_PREFIX}.{folder.name}.{path.stem}"
        if module_name in importlib.sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        importlib.sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del importlib.sys.modules[module_name]
            raise ImportError(f"verifier plugin {path} failed to import: {exc!r}") from exc


def get_verifier(name: str, dirs: list[str] | tuple[str, ...] = ()) -> Verifier:
    """Look `name` up: registered name (after loading plugin folders), or 'module:function' path."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"verifier.name={name!r}: cannot import {attr!r} from {module_name!r}") from exc
        return _REGISTRY.get(name) or Verifier(name, fn, getattr(fn, "fast", None))
    if name not in _REGISTRY:
        for folder in [BUILTIN_DIR, *map(Path, dirs)]:
            if not folder.is_dir():
                raise UserError(f"verifier.dirs: {folder} is not a directory")
            _load_plugin_dir(folder)
    if name not in _REGISTRY:
        raise UserError(
            f"unknown verifier {name!r}; registered: {sorted(_REGISTRY)}. Register one with "
            f"@verifier({name!r}) in a file under {BUILTIN_DIR} or a folder in verifier.dirs, "
            "or give a dotted path 'module:function'."
        )
    return _REGISTRY[name]
