"""Grade many completions in isolated worker processes with a hard per-answer timeout.

A verifier that hangs (a power tower in C code), crashes, or eats memory costs only that answer:
its worker is killed from outside and replaced, and the answer gets reward 0 with the reason.
Answers the verifier's `fast` function can decide (plain numbers) never leave the trainer process.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing.connection import Connection, wait

from rlpractice.grading.conventions import awaited
from rlpractice.grading.registry import Grade, as_grade, combine, get_verifier
from rlpractice.plugins import limit_worker


def _call(fn, completion: str, answer: str, columns: dict, prompt: str) -> Grade | None:
    """One verifier on one answer; its exception becomes this answer's failed grade. The prompt goes only to a
    verifier that asks for it (`wants_prompt`: TRL's reward functions), so `fn(completion, answer, **columns)`
    stays the whole interface for the others."""
    if getattr(fn, "wants_prompt", False):
        columns = {**columns, "prompt": prompt}
    try:
        return as_grade(awaited(fn(completion, answer, **columns)))  # an async verifier's, awaited here
    except BaseException as exc:  # noqa: BLE001 - any failure is this answer's, not the trainer's
        return Grade(0.0, f"error: {type(exc).__name__}: {exc}"[:300])


def _worker_main(conn: Connection, weights: dict[str, float], plugins: list[str], memory_limit_mb: int) -> None:
    limit_worker(memory_limit_mb)
    fns = {name: get_verifier(name, plugins).fn for name in weights}
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        idx, completion, answer, columns, prompt = task
        grade = combine({n: _call(fn, completion, answer, columns, prompt) for n, fn in fns.items()}, weights)
        conn.send((idx, grade))


class _Worker:
    def __init__(self, ctx, weights: dict[str, float], plugins: list[str], memory_limit_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, weights, plugins, memory_limit_mb), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.task: int | None = None  # index of the answer being graded
        self.deadline = 0.0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class GradingPool:
    def __init__(self, name: str | dict[str, float], plugins: list[str] | tuple[str, ...] = (), num_workers: int = 2,
                 timeout_s: float = 5.0, memory_limit_mb: int = 2048):
        """`name`: one verifier, or {name: weight} for a weighted combination of several; `plugins`: files or
        modules to import for their @verifier registrations (registry.get_verifier)."""
        self.weights = {name: 1.0} if isinstance(name, str) else {str(k): float(v) for k, v in name.items()}
        self.name, self.plugins = "+".join(self.weights), [str(p) for p in plugins]
        # looked up here first: a bad name fails early, in the trainer, with a clear message
        self.verifiers = {n: get_verifier(n, self.plugins) for n in self.weights}
        # how the run's verifier reads a final answer, when it says (the first of several that does)
        self.answer = next((v.answer for v in self.verifiers.values() if v.answer is not None), None)
        self.timeout_s, self.memory_limit_mb = timeout_s, memory_limit_mb
        self._ctx = mp.get_context("spawn")  # no fork: the trainer holds threads (Ray, torch)
        self._workers = [self._spawn() for _ in range(num_workers)]

    @classmethod
    def from_config(cls, verifier) -> GradingPool:
        """The pool the `verifier` config group describes: several verifiers with weights, or the one named."""
        v = verifier
        return cls(dict(v.weights) if v.weights else v.name, v.plugins, v.num_workers, v.timeout_s, v.memory_limit_mb)

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, self.weights, self.plugins, self.memory_limit_mb)

    def grade(self, completions: list[str], answers: list[str], columns: list[dict] | None = None,
              prompts: list[str] | None = None) -> list[Grade]:
        """Each completion's grade. `prompts` (one per completion) reach the verifiers that want them (TRL's);
        without them those get ""."""
        columns = columns or [{} for _ in completions]
        prompts = prompts or ["" for _ in completions]
        grades: list[Grade | None] = [None] * len(completions)
        queue: list[int] = []
        for i, (c, a) in enumerate(zip(completions, answers, strict=True)):
            grades[i] = self._fast(c, a, columns[i])
            if grades[i] is None:
                queue.append(i)
        queue.reverse()  # pop() from the end keeps the original order
        self._run(queue, completions, answers, columns, prompts, grades)
        return grades  # type: ignore[return-value]

    def _fast(self, completion: str, answer: str, columns: dict) -> Grade | None:
        """The grade when every verifier's in-process fast path decides it; None sends it to a worker."""
        parts = {}
        for name, v in self.verifiers.items():
            if v.fast is None:
                return None
            try:
                parts[name] = as_grade(v.fast(completion, answer, **columns))
            except Exception:  # noqa: BLE001 - let the isolated worker try, and report
                return None
            if parts[name] is None:
                return None
        return combine(parts, self.weights)

    def _run(self, queue, completions, answers, columns, prompts, grades) -> None:
        busy = lambda: [w for w in self._workers if w.task is not None]  # noqa: E731
        while queue or busy():
            for w in self._workers:
                if w.ready and w.task is None and queue:
                    i = queue.pop()
                    w.conn.send((i, completions[i], answers[i], columns[i], prompts[i]))
                    w.task, w.deadline = i, time.monotonic() + self.timeout_s
            active = [w for w in self._workers if w.task is not None or not w.ready]
            pending_deadlines = [w.deadline for w in active if w.task is not None]
            wait_s = max(0.0, min(pending_deadlines) - time.monotonic()) if pending_deadlines else 1.0
            ready_conns = wait([w.conn for w in active], timeout=wait_s)
            now = time.monotonic()
            for k, w in enumerate(self._workers):
                if w.conn in ready_conns:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg == "ready":
                        w.ready = True
                        continue
                    if msg is not None:
                        idx, grades[idx] = msg
                        w.task = None
                        continue
                    self._replace(k, grades, f"crash: verifier worker died (exit code {w.proc.exitcode})")
                elif w.task is not None and now >= w.deadline:
                    self._replace(k, grades, f"timeout: verifier took longer than {self.timeout_s:g}s")

    def _replace(self, k: int, grades, reason: str) -> None:
        w = self._workers[k]
        if w.task is not None:
            grades[w.task] = Grade(0.0, reason)
        elif not w.ready:
            raise RuntimeError(f"verifier {self.name!r} worker failed to start (exit code {w.proc.exitcode})")
        w.kill()
        self._workers[k] = self._spawn()

    def close(self) -> None:
        for w in self._workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
            w.kill()
        self._workers = []

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
