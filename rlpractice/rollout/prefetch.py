"""Sampling ahead (rl.max_staleness): each step's batch is drawn on a background thread."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """The batches of steps first..last, drawn by `job(step)` on a background thread.

    max_staleness 0: each batch is started when its step asks for it (synchronous). 1: the batch of step t+1
    is started as soon as step t has its own, so the engines generate it (with the weights they hold, one
    update old) while the learner trains on step t; Ray queues the weight sync behind that generation.
    Jobs run one at a time, in order, so a batch's data position is well defined.
    """

    def __init__(self, job: Callable[[int], T], first: int, last: int, max_staleness: int):
        self.job, self.next, self.last, self.ahead = job, first, last, max_staleness
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rl-sampling")
        self.pending: deque[Future] = deque()

    def _fill(self, n: int) -> None:
        while len(self.pending) < n and self.next <= self.last:
            self.pending.append(self.pool.submit(self.job, self.next))
            self.next += 1

    def get(self) -> T:
        """This step's batch (waiting for it if needed); starts the next ones per max_staleness."""
        self._fill(1)
        batch = self.pending.popleft().result()
        self._fill(self.ahead)
        return batch

    def wait(self) -> None:
        """Until no batch is being drawn (an evaluation needs the samplers to itself)."""
        for f in list(self.pending):
            f.exception()  # waits; a failure surfaces when that batch is taken

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
