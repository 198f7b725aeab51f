"""Grade many completions in isolated worker processes with a hard per-answer timeout.

A verifier that hangs (a power tower in C code), crashes, or eats memory costs only that answer:
its worker is killed from outside and replaced, and the answer gets reward 0 with the reason.
Answers the verifier's `fast` function can decide (plain numbers) never leave the trainer process.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing.connection import Connection, wait

from rlpractice.grading.registry import Grade, as_grade, get_verifier

FAILURE_PREFIXES = ("error:", "timeout", "crash")


def is_failure(reason: str) -> bool:
    """True when the verifier itself failed (as opposed to judging the answer wrong)."""
    return reason.startswith(FAILURE_PREFIXES)


def _worker_main(conn: Connection, name: str, dirs: list[str], memory_limit_mb: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle; it stops the workers
    if memory_limit_mb > 0:
        limit = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    fn = get_verifier(name, dirs).fn
    conn.send("ready")
    while True:
        task = conn.recv()
        if task is None:
            return
        idx, completion, answer, columns = task
        try:
            grade = as_grade(fn(completion, answer, **columns))
        except BaseException as exc:  # noqa: BLE001 - any failure is this answer's, not the trainer's
            grade = Grade(0.0, f"error: {type(exc).__name__}: {exc}"[:300])
        conn.send((idx, grade.reward, grade.reason))


class _Worker:
    def __init__(self, ctx, name: str, dirs: list[str], memory_limit_mb: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, name, dirs, memory_limit_mb), daemon=True)
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
    def __init__(self, name: str, dirs: list[str] | tuple[str, ...] = (), num_workers: int = 2,
                 timeout_s: float = 5.0, memory_limit_mb: int = 2048):
        self.name, self.dirs = name, list(dirs)
        self.verifier = get_verifier(name, self.dirs)  # fails early, in the trainer, on a bad name
        self.timeout_s, self.memory_limit_mb = timeout_s, memory_limit_mb
        self._ctx = mp.get_context("spawn")  # no fork: the trainer holds threads (Ray, torch)
        self._workers = [self._spawn() for _ in range(num_workers)]

    def _spawn(self) -> _Worker:
        return _Worker(self._ctx, self.name, self.dirs, self.memory_limit_mb)

    def grade(self, completions: list[str], answers: list[str], columns: list[dict] | None = None) -> list[Grade]:
        columns = columns or [{} for _ in completions]
        grades: list[Grade | None] = [None] * len(completions)
        queue: list[int] = []
        for i, (c, a) in enumerate(zip(completions, answers, strict=True)):
            if self.verifier.fast is not None:
                try:
                    grades[i] = self.verifier.fast(c, a, **columns[i])
                except Exception:  # noqa: BLE001 - let the isolated worker try, and report
                    grades[i] = None
            if grades[i] is None:
                queue.append(i)
        queue.reverse()  # pop() from the end keeps the original order
        self._run(queue, completions, answers, columns, grades)
        return grades  # type: ignore[return-value]

    def _run(self, queue, completions, answers, columns, grades) -> None:
        busy = lambda: [w for w in self._workers if w.task is not None]  # noqa: E731
        while queue or busy():
            for w in self._workers:
                if w.ready and w.task is None and queue:
                    i = queue.pop()
                    w.conn.send((i, completions[i], answers[i], columns[i]))
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
                        idx, reward, reason = msg
                        grades[idx] = Grade(reward, reason)
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
