"""Run tool calls concurrently, each with a time limit, so one slow call never holds up other samples.

The rollout loop, per sample: stop the engine at `runner.stop_strings`; `call = runner.parse(text)` on the
text decoded from the sample's token ids; `future = runner.submit(call)` (or `run([...])` for a batch);
append `tokenizer.encode(result.text)` to the sample's ids, with no loss on them; continue generating.
An asyncio rollout awaits `asyncio.wrap_future(runner.submit(call))`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rlpractice.tools.registry import Tool, get_tool
from rlpractice.tools.syntax import MAX_RESULT_CHARS, Call, ToolError, format_result, parse_call, stop_strings


@dataclass(frozen=True)
class ToolResult:
    tool: str
    text: str  # what to append after the call (encode it on its own; mask it from the loss)
    error: str | None  # None when the tool answered; else the short reason (also inside `text`)
    timed_out: bool
    seconds: float


class ToolRunner:
    """The tools of one run, by name (see registry.py); `prepare` hooks run here (the sandbox's check)."""

    def __init__(self, tools: Sequence[str] = ("calculator",), max_workers: int = 16,
                 max_result_chars: int = MAX_RESULT_CHARS):
        self.tools: dict[str, Tool] = {name: get_tool(name) for name in tools}
        for t in self.tools.values():
            if t.prepare is not None:
                t.prepare()
        self.syntaxes = {name: t.syntax for name, t in self.tools.items()}
        self.stop_strings = stop_strings(self.syntaxes)
        self.max_result_chars = max_result_chars
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="tool")
        self._deadlines = Deadlines()

    def parse(self, text: str) -> Call | None:
        return parse_call(text, self.syntaxes)

    def _result(self, call: Call, output: str, error: str | None, timed_out: bool, start: float) -> ToolResult:
        text = format_result(self.syntaxes[call.tool], output, error, self.max_result_chars)
        return ToolResult(call.tool, text, error, timed_out, time.monotonic() - start)

    def submit(self, call: Call) -> Future:
        """A Future of the call's ToolResult; never raises (a failing tool gives an error result)."""
        start, done = time.monotonic(), Future()
        if call.argument is None:
            done.set_result(self._result(call, "", call.error, False, start))
            return done
        tool, lock = self.tools[call.tool], threading.Lock()

        def finish(output: str, error: str | None, timed_out: bool) -> None:
            with lock:
                if not done.done():
                    done.set_result(self._result(call, output, error, timed_out, start))

        def work() -> None:
            try:
                finish(str(tool.fn(call.argument)), None, False)
            except ToolError as exc:
                finish(exc.output, str(exc), exc.timeout)
            except Exception as exc:  # noqa: BLE001 - a tool's bug is the model's error message, not a crash
                finish("", f"{type(exc).__name__}: {exc}", False)

        if tool.inline:
            work()
            return done
        self._pool.submit(work)
        if tool.timeout is not None:  # a Python function cannot be stopped: its thread finishes on its own
            self._deadlines.add(start + tool.timeout, finish, "", f"timeout: no answer within {tool.timeout:g} s", True)
        return done

    def run(self, calls: Sequence[Call]) -> list[ToolResult]:
        """Results of several calls, run at the same time, in order."""
        return [f.result() for f in [self.submit(c) for c in calls]]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._deadlines.close()


class Deadlines:
    """Calls `fn(*args)` at a monotonic time, from one thread for all calls (a timer thread per tool call costs
    more than a calculator call; scripts/bench_tools.py). A call whose tool answered first finds its Future done
    and does nothing."""

    def __init__(self):
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._order = itertools.count()  # ties: first added, first called (functions do not compare)
        self._wake = threading.Condition()
        self._closed = False
        threading.Thread(target=self._loop, name="tool-deadlines", daemon=True).start()

    def add(self, when: float, fn: Callable, *args) -> None:
        with self._wake:
            seq = next(self._order)
            heapq.heappush(self._heap, (when, seq, fn, args))
            if self._heap[0][1] == seq:  # the earliest now: the loop must sleep less
                self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            fn(*args)
