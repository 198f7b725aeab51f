"""Your environment class runs in worker processes, not in the sampler: `env.name=file.py:Cls` (written for
rlpractice, base.py) or `env.name=gym:file.py:Cls` (gym-style, gym_adapter.py).

A step that hangs, crashes its process or eats memory costs its episode, not the engine that samples every other
one. Each `IsolatedEnvironment` (one per episode) is a proxy: its reset and step run on one worker process, which
holds the real instances of many episodes, keyed by episode id. A factory has a few workers; a proxy keeps to
the one it was given, and one call at a time goes to a worker (a lock), so the sampler's step threads can share
them. A call that takes longer than `step_timeout_s` kills its worker (a new one starts) and raises
TimeoutError("timeout: ..."); the other episodes that lived there raise RuntimeError("crash: ...") at their next
call. An exception in your code comes back as RuntimeError("error: <Type>: <message>").
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import threading
from collections import deque
from multiprocessing.connection import Connection

from rlpractice.environments.base import Environment, Step, check_step
from rlpractice.errors import UserError
from rlpractice.plugins import import_plugin, limit_worker, load_object
from rlpractice.textbook.problems import Problem

STARTUP_S = 120.0  # a worker's start (Python, rlpractice, your file); not counted against step_timeout_s


def environment_class(name: str, plugins: list[str]) -> tuple[type, bool]:
    """The class `name` ('file.py:Cls', 'module:Cls', either after 'gym:') names, and whether it is gym-style;
    a UserError naming env.name when it is no environment class."""
    gym = name.startswith("gym:")
    for ref in plugins:
        import_plugin(str(ref), "env.plugins")
    cls = load_object(name.removeprefix("gym:"), "env.name")
    if not isinstance(cls, type):
        raise UserError(f"env.name={name!r} is a {type(cls).__name__}, not a class")
    missing = [m for m in ("reset", "step") if not callable(getattr(cls, m, None))]
    if missing:
        expected = ("reset(*, seed=None, options=None) -> (observation, info) and step(action) -> (observation, "
                    "reward, terminated, truncated, info)") if gym else "reset(problem) and step(turn) -> Step"
        raise UserError(f"env.name={name!r}: {cls.__name__} has no {' or '.join(missing)}() method; an environment "
                        f"class defines {expected}")
    return cls, gym


def environment_factory(name: str, plugins: list[str], step_timeout_s: float, num_workers: int = 2,
                        memory_limit_mb: int = 2048) -> IsolatedEnvironments:
    """A zero-argument factory of isolated environments of the class `name` names (checked here first, so a bad
    name fails before anything starts); `close()` it to stop its workers."""
    cls, _ = environment_class(name, [str(p) for p in plugins])
    return IsolatedEnvironments(name, [str(p) for p in plugins], step_timeout_s, num_workers, memory_limit_mb,
                                tuple(getattr(cls, "stop_strings", ())), bool(getattr(cls, "gives_reward", True)))


def _failure(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def _worker_main(conn: Connection, name: str, plugins: list[str], memory_limit_mb: int) -> None:
    """Hold episodes' instances and answer ("reset" | "step", episode id, argument, ids to forget) messages."""
    limit_worker(memory_limit_mb)
    try:
        cls, gym = environment_class(name, plugins)  # loaded here from its name: a class need not pickle
        if gym:
            from rlpractice.environments.gym_adapter import GymAdapter

            def make():
                return GymAdapter(cls())
        else:
            make = cls
    except BaseException as exc:  # noqa: BLE001 - said to the sampler, which raises it
        conn.send(("error", _failure(exc)))
        return
    conn.send(("ready", None))
    instances: dict[int, Environment] = {}
    while True:
        message = conn.recv()
        if message is None:
            return
        op, episode, arg, forget = message
        for e in forget:  # episodes whose proxies are gone
            instances.pop(e, None)
        try:
            if op == "reset":
                env = instances[episode] = make()
                text = env.reset(arg)
                if text is not None and not isinstance(text, str):
                    raise ValueError(f"reset() returned a {type(text).__name__}, not a str or None")
                reply = (text, tuple(env.stop_strings), bool(getattr(env, "gives_reward", True)))
            elif episode not in instances:
                raise RuntimeError("step() after the episode ended")
            else:
                reply = check_step(instances[episode].step(arg))
                if reply.done:
                    del instances[episode]
            conn.send(("ok", reply))
        except BaseException as exc:  # noqa: BLE001 - the episode's failure (also a step's unpicklable info)
            if op == "reset":
                instances.pop(episode, None)
            conn.send(("error", _failure(exc)))


class _Worker:
    """One worker process, replaced when it dies or is killed; `generation` counts the replacements, so a proxy
    can tell that the instance it made lived on a worker that is gone."""

    def __init__(self, ctx, args: tuple):
        self.ctx, self.args = ctx, args
        self.lock = threading.Lock()
        self.generation = 0
        self.deaths: dict[int, str] = {}  # generation -> how its process ended
        self.forget: deque[int] = deque()  # episode ids to drop (appended by proxies' __del__, without the lock)
        self.closed = False
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker_main, args=(child, *self.args), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False

    def _replace(self, why: str) -> None:
        self.deaths[self.generation] = why
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()
        self.generation += 1
        self.forget.clear()
        if not self.closed:
            self._start()  # not waited for: the next call waits for it to be ready

    def call(self, op: str, episode: int, arg, generation: int | None, timeout_s: float):
        """(the worker's answer, its generation). `generation`: the one the episode's instance was made on."""
        with self.lock:
            if self.closed:
                raise RuntimeError("crash: the environment workers were closed")
            if not self.proc.is_alive():
                self._replace(f"exit code {self.proc.exitcode}")
            if generation is not None and generation != self.generation:
                raise RuntimeError(f"crash: environment worker died ({self.deaths[generation]}); this episode's "
                                   "environment was lost")
            self._wait_ready()
            forget = []
            while self.forget:
                forget.append(self.forget.popleft())
            try:
                self.conn.send((op, episode, arg, forget))
                answered = self.conn.poll(timeout_s)  # True at the answer, or when the process ended
                message = self.conn.recv() if answered else None
            except (EOFError, OSError):  # the process ended (os._exit, the memory limit, a signal)
                self.proc.join(timeout=5)
                why = f"exit code {self.proc.exitcode}"
                self._replace(why)
                raise RuntimeError(f"crash: environment worker died ({why}) during {op}") from None
            if message is None:
                self._replace(f"killed: an episode's {op} took longer than {timeout_s:g} s")
                raise TimeoutError(f"timeout: environment {op} took longer than {timeout_s:g} s")
            status, value = message
            if status == "error":
                raise RuntimeError(value)
            return value, self.generation

    def _wait_ready(self) -> None:
        if self.ready:
            return
        try:
            message = self.conn.recv() if self.conn.poll(STARTUP_S) else ("error", f"not ready after {STARTUP_S:g} s")
        except (EOFError, OSError):
            self.proc.join(timeout=5)
            message = ("error", f"it died (exit code {self.proc.exitcode})")
        if message[0] != "ready":
            why = message[1].removeprefix("error: ")
            self._replace(f"failed to start: {why}")
            raise RuntimeError(f"error: environment worker failed to start: {why}")
        self.ready = True

    def close(self) -> None:
        self.closed = True
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class IsolatedEnvironments:
    """Makes `IsolatedEnvironment`s on `num_workers` worker processes (spawned: the sampler holds threads)."""

    def __init__(self, name: str, plugins: list[str], step_timeout_s: float, num_workers: int, memory_limit_mb: int,
                 stop_strings: tuple[str, ...] = (), gives_reward: bool = True):
        self.name, self.step_timeout_s = name, step_timeout_s
        self.stop_strings, self.gives_reward = stop_strings, gives_reward
        ctx = mp.get_context("spawn")
        self.workers = [_Worker(ctx, (name, plugins, memory_limit_mb)) for _ in range(max(1, num_workers))]
        self._ids = itertools.count()

    def __call__(self) -> IsolatedEnvironment:
        episode = next(self._ids)
        return IsolatedEnvironment(self, self.workers[episode % len(self.workers)], episode)

    def close(self) -> None:
        for w in self.workers:
            w.close()

    def __enter__(self) -> IsolatedEnvironments:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class IsolatedEnvironment:
    """One episode's environment, living in a worker process (`Environment` protocol)."""

    step_timeout_s = None  # it enforces its own limit (the loop need not time it): a late step kills its worker

    def __init__(self, factory: IsolatedEnvironments, worker: _Worker, episode: int):
        self._factory, self._worker, self._episode = factory, worker, episode
        self._generation: int | None = None  # the worker's generation the instance was made on; None: not yet
        # the class's attributes until reset tells the instance's own
        self.stop_strings, self.gives_reward = factory.stop_strings, factory.gives_reward

    def reset(self, problem: Problem) -> str | None:
        (text, self.stop_strings, self.gives_reward), self._generation = self._call("reset", problem, None)
        return text

    def step(self, turn: str) -> Step:
        if self._generation is None:
            raise RuntimeError("error: step() before reset()")
        step, _ = self._call("step", turn, self._generation)
        return step

    def _call(self, op: str, arg, generation: int | None):
        return self._worker.call(op, self._episode, arg, generation, self._factory.step_timeout_s)

    def __del__(self) -> None:
        # the worker drops the instance at its next call (no I/O here: this may run in any thread)
        if self._generation is not None and self._generation == self._worker.generation:
            self._worker.forget.append(self._episode)
